"""The agent's display name, wherever the user meets the agent.

Chat API v2 events carry `agentName`. Chat Gateway events carry only the agent's id: its name
comes from 8x8's Real-time Metrics API (`GET /agents?summary=true`, cached), when the operator
configured its credentials; otherwise it stays unknown and the bot's responses use their
neutral variation ("An agent has joined the chat.").

Agent messages show the name as the operator words it (`HANDOFF_AGENT_MESSAGE_FORMAT`, e.g.
"{agent_name}: {text}"): most Rasa channels show a pushed message as a plain bot bubble, so
the name in the text is the only way the user can tell the person from the bot. The name also
travels in the bot event's metadata (`metadata.handoff.agent`) for front ends that render it.
"""

from __future__ import annotations

import re
import string
from dataclasses import replace
from typing import Final

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.eightbyeight.realtime import RealtimeMetrics

PLACEHOLDERS: Final = frozenset({"agent_name", "text"})
DEFAULT_MESSAGE_FORMAT: Final = "{agent_name}: {text}"

_PLACEHOLDER: Final = re.compile(r"\{(agent_name|text)\}")
_NAMED_KINDS: Final = frozenset(
    {EventKind.AGENT_JOINED, EventKind.AGENT_LEFT, EventKind.AGENT_MESSAGE, EventKind.TYPING}
)


def check_message_format(template: str) -> str | None:
    """The problem with a message format, or None when it is usable."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError:
        return "is not a valid format (unbalanced { or })"
    unknown = fields - PLACEHOLDERS
    if unknown:
        return f"knows only {{agent_name}} and {{text}}, not {{{sorted(unknown)[0]}}}"
    if "text" not in fields:
        return "must contain {text}"
    return None


def format_agent_message(template: str, agent_name: str | None, text: str | None) -> str | None:
    """The text the user sees. Without a name (or a text) the words go as they are."""
    if text is None or not agent_name:
        return text
    values = {"agent_name": agent_name, "text": text}
    # One pass: a name or text that itself contains "{text}" is shown as written.
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


class AgentNames:
    """Fills in the agent's name on events that carry only the agent's id."""

    def __init__(self, metrics: RealtimeMetrics | None) -> None:
        self._metrics = metrics

    async def complete(self, event: ChatEvent) -> ChatEvent:
        if self._metrics is None or event.agent_name or not event.agent_id:
            return event
        if event.kind not in _NAMED_KINDS:
            return event
        name = await self._metrics.agent_name(event.agent_id)
        return replace(event, agent_name=name) if name else event
