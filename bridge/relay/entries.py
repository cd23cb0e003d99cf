"""A partition stream's entries as the consumer works them: decoded into their input (an 8x8
event or a fired timer), and grouped into units of work (`runs.py`)."""

from __future__ import annotations

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.handoff import TimerFired
from bridge.ids import ConversationId
from bridge.relay import runs
from bridge.store.base import TIMER_EVENT_PREFIX, StreamEntry
from bridge.store.timers import fired_timer

Input = ChatEvent | TimerFired  # what an entry holds
Unit = list[tuple[StreamEntry, Input | None]]  # a unit of work of a read batch (`runs.py`)


def items(unit: Unit) -> list[runs.Item]:
    return [runs.Item(conversation_of(event), is_message(event)) for _, event in unit]


def conversation_of(event: Input | None) -> ConversationId | None:
    return event.conversation_id if event is not None else None


def is_message(event: Input | None) -> bool:
    return isinstance(event, ChatEvent) and event.kind is EventKind.AGENT_MESSAGE


def parsed_or_decoded(entry: StreamEntry, parsed: dict[str, ChatEvent]) -> Input | None:
    """The event the door parsed for the entry, if given; else the entry decoded."""
    event = parsed.get(entry.entry_id)
    return decode(entry) if event is None else event


def decode(entry: StreamEntry) -> Input | None:
    """The entry's input; None when it cannot be read (it is dead-lettered)."""
    try:
        if entry.event_id.startswith(TIMER_EVENT_PREFIX):
            return fired_timer(entry.payload)
        return ChatEvent.from_json(entry.payload)
    except (ValueError, TypeError, KeyError):
        return None
