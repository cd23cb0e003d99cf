"""What Rasa is asked to do for one state-machine step: the pushes its effects need (each with
the marker that finds it in the tracker later) and what it does to the timers. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.eightbyeight.events import Attachment
from bridge.handoff import ArmTimer, DisarmTimer, NotifyBot, SayToUser, Step, TimerChange
from bridge.rasa.client import BotMessage


@dataclass(frozen=True, slots=True)
class Push:
    """One call into Rasa, with the marker that lets us find it in the tracker later."""

    marker: str
    intent: str | None = None
    entities: dict[str, str] | None = None
    text: str | None = None
    agent_name: str | None = None
    data: dict[str, Any] | None = None


def pushes_for(step: Step, event_id: str) -> list[Push]:
    """The Rasa calls a step's effects need, each with its own marker (`event_id`: the base of
    the markers)."""
    out: list[Push] = []
    for i, effect in enumerate(step.effects):
        if isinstance(effect, NotifyBot):
            out.append(
                Push(f"{event_id}:{i}", intent=effect.intent, entities=dict(effect.entities))
            )
        elif isinstance(effect, SayToUser):
            _message_pushes(out, f"{event_id}:{i}", effect)
    return out


def _message_pushes(out: list[Push], marker: str, say: SayToUser) -> None:
    # Rasa's channels take one image or attachment per message: the first rides with the text,
    # further ones follow as messages of their own. Positional (field order): the hot path.
    attachments = say.attachments
    if not attachments:
        out.append(Push(marker, None, None, say.text, say.agent_name, None))
        return
    out.append(Push(marker, None, None, say.text, say.agent_name, _attachment_data(attachments[0])))
    for k, a in enumerate(attachments[1:], start=1):
        out.append(Push(f"{marker}.{k}", None, None, None, say.agent_name, _attachment_data(a)))


def bot_message(push: Push) -> BotMessage:
    return BotMessage(push.text, push.marker, push.agent_name, push.data)


def timer_changes(steps: Sequence[Step]) -> tuple[TimerChange, ...]:
    """What `steps` do to the timer set, in order: the timers they arm, and the armings they
    leave behind (`DisarmTimer`). A later change of a member supersedes an earlier one."""
    return tuple(
        e.timer if isinstance(e, ArmTimer) else e
        for step in steps
        for e in step.effects
        if isinstance(e, ArmTimer | DisarmTimer)
    )


def _attachment_data(attachment: Attachment) -> dict[str, Any]:
    if attachment.type == "image":
        return {"image": attachment.url}
    return {"attachment": {"url": attachment.url, "name": attachment.name, "type": attachment.type}}
