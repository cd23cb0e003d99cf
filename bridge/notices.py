"""What the relay adds to 8x8's events before they reach the user: the Gateway agent's name,
the queue's figures, and the agent's name on each of their messages.

One object, built from settings, handed to the relay; without Real-time Metrics credentials
it only words agent messages (the names chat-v2 events carry).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from bridge.agent_names import DEFAULT_MESSAGE_FORMAT, AgentNames, format_agent_message
from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.eightbyeight.realtime import RealtimeMetrics
from bridge.handoff import ENTITY_QUEUE, INTENT_HANDOFF_QUEUED, INTENT_QUEUE_REMINDER, Handoff
from bridge.queue_status import queue_entities

if TYPE_CHECKING:
    from bridge.relay.pushes import Push


class Notices:
    def __init__(
        self, metrics: RealtimeMetrics | None = None, message_format: str = DEFAULT_MESSAGE_FORMAT
    ) -> None:
        self.metrics = metrics
        self._names = AgentNames(metrics)
        self._format = message_format

    async def complete(self, event: ChatEvent) -> ChatEvent:
        """The event with the agent's name filled in where 8x8 sent only the id."""
        return await self._names.complete(event)

    async def dress(self, pushes: Sequence[Push], event: ChatEvent) -> list[Push]:
        """The pushes as the user should get them: queue figures on the queued notice, the
        agent's name on their words."""
        out: list[Push] = []
        for push in pushes:
            if push.intent == INTENT_HANDOFF_QUEUED and event.kind is EventKind.QUEUED:
                push = replace(push, entities=await self._queue(push, event))
            elif push.intent is None:
                text = format_agent_message(self._format, push.agent_name, push.text)
                if text is not push.text:  # unchanged (no name, no text): the push as it is
                    push = _with_text(push, text)
            out.append(push)
        return out

    async def dress_timer(self, pushes: Sequence[Push], handoff: Handoff) -> list[Push]:
        """The pushes of a timer: the queue reminder carries the queue's figures as they are
        now, like the queued notice (the handoff record knows the queue; 8x8 sends nothing)."""
        out: list[Push] = []
        for push in pushes:
            if push.intent == INTENT_QUEUE_REMINDER and self.metrics is not None and handoff.queue:
                figures = await self.metrics.queue(handoff.queue)
                push = replace(
                    push, entities={**(push.entities or {}), **queue_entities(None, figures)}
                )
            out.append(push)
        return out

    async def _queue(self, push: Push, event: ChatEvent) -> dict[str, str]:
        entities = dict(push.entities or {})
        figures = None
        if self.metrics is not None and event.queue_id:
            figures = await self.metrics.queue(event.queue_id)
        entities.update(queue_entities(entities.get(ENTITY_QUEUE), figures))
        return entities


def _with_text(push: Push, text: str | None) -> Push:
    # `dataclasses.replace`, without its generic inspection of every field (once per message).
    return type(push)(push.marker, push.intent, push.entities, text, push.agent_name, push.data)
