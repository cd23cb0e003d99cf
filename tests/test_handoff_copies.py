"""The record's hand-written paths (copies, the stored form, the relay's per-outcome counters)
behave exactly as the generic ones they stand in for."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.handoff import Handoff, State, TimerKind, on_event
from bridge.ids import ConversationId, EventId, SenderId
from bridge.metrics import Metrics
from bridge.notices import Notices
from bridge.relay.config import RelayConfig
from bridge.relay.deliver import Deliverer
from bridge.relay.pushes import Push
from bridge.store.base import StreamEntry

C1 = ConversationId("c1")
T0 = 1_700_000_000_000

# Every field set, each to a value no other field has.
FULL = Handoff(
    state=State.WITH_AGENT,
    conversation_id=C1,
    agent_name="Anna",
    agent_id="a1",
    since_ms=T0,
    changed_ms=T0 + 1,
    transfer_ms=T0 + 2,
    left_ms=T0 + 3,
    queue="q1",
    agent_ms=T0 + 4,
    user_ms=T0 + 5,
    timers=((TimerKind.AGENT_SILENCE, T0 + 6), (TimerKind.USER_SILENCE, T0 + 7)),
)
OTHER: dict[str, Any] = {
    "state": State.QUEUED,
    "conversation_id": ConversationId("c2"),
    "agent_name": "Bo",
    "agent_id": "a2",
    "since_ms": 11,
    "changed_ms": 12,
    "transfer_ms": 13,
    "left_ms": 14,
    "queue": "q2",
    "agent_ms": 15,
    "user_ms": 16,
    "timers": ((TimerKind.QUEUE_TIMEOUT, 17),),
}


def test_every_field_has_another_value_in_the_table() -> None:
    assert set(OTHER) == {f.name for f in dataclasses.fields(Handoff)}


@pytest.mark.parametrize("name", list(OTHER))
@pytest.mark.parametrize("value", ["other", None])
def test_replace_changes_the_named_field_only(name: str, value: str | None) -> None:
    new = OTHER[name] if value == "other" else None
    assert FULL.replace(**{name: new}) == dataclasses.replace(FULL, **{name: new})


def test_replace_without_changes_is_an_equal_record() -> None:
    assert FULL.replace() == FULL


def test_the_stored_fields_keep_the_records_order() -> None:
    names = [f.name for f in dataclasses.fields(Handoff)]
    assert list(FULL.to_fields()) == names
    assert Handoff.from_fields(FULL.to_fields()) == FULL


def test_timers_read_twice_from_the_same_string_are_the_same() -> None:
    stored = FULL.to_fields()
    assert stored["timers"] == f"agent_silence={T0 + 6};user_silence={T0 + 7}"
    assert Handoff.from_fields(stored).timers == Handoff.from_fields(dict(stored)).timers
    odd = {**stored, "timers": "agent_silence=x;nap=5;user_silence=9;queue_timeout=8"}
    assert Handoff.from_fields(odd).timers == (
        (TimerKind.QUEUE_TIMEOUT, 8),
        (TimerKind.USER_SILENCE, 9),
    )


def _message(**kw: Any) -> ChatEvent:
    base: dict[str, Any] = {"raw_type": "TEST", "conversation_id": C1, "text": "hi"}
    return ChatEvent(kind=EventKind.AGENT_MESSAGE, **{**base, **kw})


def test_a_known_agents_message_keeps_the_record_itself() -> None:
    h = FULL.replace(timers=())
    step = on_event(h, _message(agent_id="a1", agent_name="Anna"), T0 + 10)
    assert step.outcome == "relayed" and step.handoff is h


@pytest.mark.parametrize(
    ("known", "sent", "learnt"),
    [
        ({"agent_id": None}, {"agent_id": "a9"}, {"agent_id": "a9"}),
        ({"agent_id": None}, {"agent_id": ""}, {"agent_id": ""}),  # "" is learnt, as None is not
        ({"agent_name": None}, {"agent_name": "Cy"}, {"agent_name": "Cy"}),
        ({"agent_name": None}, {"agent_name": ""}, {"agent_name": ""}),
        ({"agent_id": ""}, {"agent_id": None}, {"agent_id": None}),
    ],
)
def test_a_message_fills_in_what_the_record_lacks(
    known: dict[str, Any], sent: dict[str, Any], learnt: dict[str, Any]
) -> None:
    h = FULL.replace(timers=(), **known)
    step = on_event(h, _message(**sent), T0 + 10)
    assert step.outcome == "relayed"
    assert step.handoff == h.replace(changed_ms=T0 + 10, **learnt)


def test_the_relay_counts_each_outcome_on_its_own() -> None:
    metrics = Metrics()
    deliverer = Deliverer(None, None, metrics, RelayConfig())  # type: ignore[arg-type]
    entry = StreamEntry(f"{T0}-0", EventId("e1"), "{}")
    event = _message()
    for outcome in ["relayed", "duplicate", "relayed", "ignored_stale", "relayed"]:
        step = on_event(Handoff(), event, T0)
        deliverer._processed(
            SenderId("s"), entry, event, dataclasses.replace(step, outcome=outcome)
        )
    counts = {o: metrics.relay_outcomes.labels(o)._value.get() for o in ["relayed", "duplicate"]}
    assert counts == {"relayed": 3, "duplicate": 1}
    assert metrics.relay_outcomes.labels("ignored_stale")._value.get() == 1


@pytest.mark.parametrize(
    ("push", "text"),
    [
        (Push("m:0", text="hi", agent_name="Anna"), "Anna: hi"),
        (Push("m:0", text="hi", agent_name=None), "hi"),
        (Push("m:0", text=None, agent_name="Anna", data={"image": "u"}), None),
    ],
)
def test_the_agents_words_are_named_and_nothing_else_changes(push: Push, text: str | None) -> None:
    [dressed] = asyncio.run(Notices().dress([push], _message()))
    assert dressed == dataclasses.replace(push, text=text)


def test_an_unknown_stored_kind_still_fails_to_decode() -> None:
    stored = _message().to_json().replace('"agent_message"', '"from_the_future"')
    with pytest.raises(ValueError, match="from_the_future"):
        ChatEvent.from_json(stored)
    for kind in EventKind:
        event = ChatEvent(kind=kind, raw_type="T")
        assert ChatEvent.from_json(event.to_json()).kind is kind
