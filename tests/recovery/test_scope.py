"""Which listed messages and which join/leave recovery considers: tables over the pure rules."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bridge.eightbyeight.client import Conversation, ConversationMessage, Interaction, Participant
from bridge.eightbyeight.events import EventKind
from bridge.handoff import Handoff, State
from bridge.ids import ConversationId
from bridge.recovery.scope import agent_messages, state_change
from bridge.relay.identity import MessageIdentity, text_digest

C = ConversationId("c1")
SINCE = 1_700_000_000_000
TOL = 5_000
H = Handoff(State.WITH_AGENT, C, agent_id="a1", since_ms=SINCE, changed_ms=SINCE)


def iso(ms: int) -> str:
    from bridge.simulator.ids import iso as sim_iso

    return sim_iso(ms)


def gw(text: str, at: int | None, author: str = "agent") -> ConversationMessage:
    return ConversationMessage(text, author, id="m", created_at=iso(at) if at else None)


def v2(text: str, interaction: str, author: str = "agent") -> ConversationMessage:
    return ConversationMessage(text, author, interaction_id=interaction)


def texts_and_ordinals(found: list) -> list[tuple[str | None, int]]:  # type: ignore[type-arg]
    return [(m.event.text, m.identity.ordinal) for m in found]


def test_gateway_messages_since_the_handoff_began_counted_over_the_whole_conversation() -> None:
    listed = [
        gw("ok", SINCE - 60_000),  # an earlier handoff's: not recovered, but counted
        gw("hi", SINCE + 1_000, author="user"),  # not the agent's
        gw("ok", SINCE - 1_000),  # inside the clock-skew tolerance
        gw("no time", None),  # without a time it cannot be placed: left alone
        gw("ok", SINCE + 2_000),
    ]
    found = agent_messages(H, None, listed, TOL)
    assert texts_and_ordinals(found) == [("ok", 2), ("ok", 3)]
    assert found[0].written_ms == SINCE - 1_000
    assert found[0].identity == MessageIdentity(text_digest("ok"), 2)


def test_v2_messages_of_the_interactions_begun_since_the_handoff() -> None:
    conv = Conversation(C, None, None, interactions=(
        Interaction("i1", SINCE - 60_000, SINCE - 30_000), Interaction("i2", SINCE + 10),
    ))  # fmt: skip
    listed = [v2("ok", "i1"), v2("ok", "i2"), v2("hey", "i2", author="user"), v2("bye", "i2")]
    found = agent_messages(H, conv, listed, TOL)
    assert texts_and_ordinals(found) == [("ok", 2), ("bye", 1)]
    assert all(m.written_ms is None for m in found)


def test_v2_without_interaction_times_takes_the_last_interaction() -> None:
    conv = Conversation(C, None, None, interactions=(Interaction("i1"), Interaction("i2")))
    found = agent_messages(H, conv, [v2("old", "i1"), v2("new", "i2")], TOL)
    assert texts_and_ordinals(found) == [("new", 1)]


def agents(*present: str, gone: tuple[str, ...] = ()) -> list[Participant]:
    return [Participant("u", "user", False)] + [
        Participant(a, "agent", False) for a in present
    ] + [Participant(a, "agent", True) for a in gone]  # fmt: skip


@pytest.mark.parametrize(
    ("state", "participants", "expected"),
    [
        (State.QUEUED, agents("a1"), (EventKind.AGENT_JOINED, "a1")),
        (State.REQUESTED, agents("a1"), (EventKind.AGENT_JOINED, "a1")),
        (State.TRANSFERRING, agents("a2", gone=("a1",)), (EventKind.AGENT_JOINED, "a2")),
        (State.QUEUED, agents(gone=("a0",)), None),
        (State.WITH_AGENT, agents("a1"), None),
        (State.WITH_AGENT, agents(gone=("a1",)), (EventKind.AGENT_LEFT, "a1")),
        (State.WITH_AGENT, agents("a2", gone=("a1",)), (EventKind.AGENT_JOINED, "a2")),
    ],
)
def test_gateway_joins_and_leaves_from_the_participants(
    state: State, participants: list[Participant], expected: tuple[EventKind, str] | None
) -> None:
    change = state_change(replace(H, state=state), None, participants, TOL)
    got = (change.event.kind, change.event.agent_id) if change else None
    assert got == expected


@pytest.mark.parametrize(
    ("start", "end", "left"),
    [(SINCE + 10, SINCE + 99, True), (SINCE + 10, None, False), (SINCE - 60_000, SINCE, False)],
)
def test_v2_a_leave_from_the_current_interactions_end(
    start: int, end: int | None, left: bool
) -> None:
    conv = Conversation(C, None, None, interactions=(Interaction("i", start, end),))
    v2_agents = [Participant("a1", "agent", None)]  # v2 does not say who left
    change = state_change(H, conv, v2_agents, TOL)
    assert (change is not None and change.event.kind is EventKind.AGENT_LEFT) is left


def test_a_synthetic_event_is_named_by_the_record_it_was_read_from() -> None:
    gone = agents(gone=("a1",))
    one, same = state_change(H, None, gone, TOL), state_change(H, None, gone, TOL)
    later = state_change(replace(H, changed_ms=SINCE + 1), None, gone, TOL)
    assert one and same and later
    assert one.event_id == same.event_id != later.event_id
    assert str(one.event_id).startswith("rcv:")
