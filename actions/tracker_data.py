"""What the actions read from a Rasa tracker: transcript, customer data, fallback streaks.
Pure functions over the tracker's JSON, so they are easy to test."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bridge.eightbyeight.client import Customer, HistoryMessage

# Actions Rasa runs around every turn; the one that handled a user turn is the first other one.
_BOOKKEEPING = {
    "action_listen",
    "action_extract_slots",
    "action_session_start",
    "action_unlikely_intent",
}
ESCALATE_ACTION = "action_handoff_to_agent"

# Metadata keys (from the channel, e.g. the REST body's "metadata") we pass on to the agent.
_METADATA_FIELDS = {
    "name": "name", "email": "email", "phone": "phone", "company": "company", "language": "language",
    "user_id": "user_id", "userId": "user_id", "customerId": "user_id", "case_id": "case_id",
}  # fmt: skip
_STANDARD = ("name", "email", "user_id", "phone", "company", "case_id", "language")


def transcript(events: Iterable[Mapping[str, Any]]) -> list[HistoryMessage]:
    """The user and bot turns, oldest first, without commands and the bridge's own triggers."""
    out: list[HistoryMessage] = []
    for event in events:
        text = event.get("text")
        if not isinstance(text, str) or not text.strip():
            continue
        if event.get("event") == "user" and not text.startswith(("/", "EXTERNAL: ")):
            out.append(HistoryMessage("user", text))
        elif event.get("event") == "bot" and not _is_agent_message(event):
            out.append(HistoryMessage("bot", text))
    return out


def _is_agent_message(event: Mapping[str, Any]) -> bool:
    # Agent texts the bridge pushed are `bot` events too; 8x8 has them already.
    metadata = event.get("metadata") or {}
    return isinstance(metadata, Mapping) and "handoff" in metadata


def since_last_handoff(
    events: Sequence[Mapping[str, Any]], slot: str = "handoff_active"
) -> list[Mapping[str, Any]]:
    """The events after the last handoff ended (the last time `slot` turned false after being
    true): what the agent of a reopened conversation has not seen. All events when there was
    no earlier handoff."""
    start, was_active = 0, False
    for i, event in enumerate(events):
        if event.get("event") == "slot" and event.get("name") == slot:
            if event.get("value"):
                was_active = True
            elif was_active:
                start, was_active = i + 1, False
    return list(events[start:])


def customer(
    sender_id: str, slots: Mapping[str, Any], metadata: Mapping[str, Any], slot_names: Sequence[str]
) -> Customer:
    """Customer data for the agent: the configured slots, then known metadata keys."""
    values: dict[str, str] = {}
    extra: list[tuple[str, str]] = [("rasaSenderId", sender_id)]
    for key, value in metadata.items():
        field = _METADATA_FIELDS.get(key)
        if field and _scalar(value):
            values.setdefault(field, str(value))
    for name in slot_names:
        value = slots.get(name)
        if not _scalar(value):
            continue
        if name in _STANDARD:
            values[name] = str(value)
        else:
            extra.append((name, str(value)))
    return Customer(**{k: values.get(k) for k in _STANDARD}, extra=tuple(extra))


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value) != ""


def fallback_streak(
    events: Sequence[Mapping[str, Any]], escalation_intent: str = "human_handoff"
) -> int:
    """How many user turns in a row, ending with the latest, the escalate action handled as a
    fallback (the latest counts: the action is running for it). A turn that asked for a
    person, or that anything else handled, ends the streak."""
    turns: list[tuple[str | None, str | None]] = []  # per user turn: (intent, handling action)
    for event in events:
        if event.get("event") == "user":
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            turns.append((intent, None))
        elif event.get("event") == "action" and turns and turns[-1][1] is None:
            name = event.get("name")
            if name not in _BOOKKEEPING:
                turns[-1] = (turns[-1][0], str(name))
    streak = 0
    for i, (intent, handled_by) in enumerate(reversed(turns)):
        if i > 0 and (handled_by != ESCALATE_ACTION or intent == escalation_intent):
            break
        streak += 1
    return streak
