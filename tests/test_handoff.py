"""The handoff state machine: transition tables, whole lifecycles of both 8x8 API families
(parsed from real-shaped webhook bodies), and properties over random event sequences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.eightbyeight.events import Attachment, ChatEvent, EventKind, parse_event
from bridge.handoff import (
    INTENT_AGENT_JOINED,
    INTENT_AGENT_LEFT,
    INTENT_HANDOFF_QUEUED,
    OUTCOMES,
    ActionInput,
    Effect,
    Escalated,
    EscalationFailed,
    Handoff,
    NotifyBot,
    SayToUser,
    State,
    Step,
    Timing,
    UserEnded,
    UserSpoke,
    on_action,
    on_event,
)
from bridge.ids import ConversationId

C1 = ConversationId("c1")
C2 = ConversationId("c2")
T0 = 1_700_000_000_000  # since_ms of the handoffs in the tables
NOW = T0 + 60_000  # the bridge's clock when the tables' inputs are applied
AT = NOW - 500  # the default 8x8 timestamp of the tables' events
ANN = {"agent_id": "a1", "agent_name": "Ann"}
PIC = Attachment(url="https://files.example/p.png", name="p.png", type="image", id="att1")


def hand(state: State, **kw: Any) -> Handoff:
    base: dict[str, Any] = {"conversation_id": C1, "since_ms": T0, "changed_ms": T0}
    return Handoff(state=state, **{**base, **kw})


def ev(kind: EventKind, **kw: Any) -> ChatEvent:
    base: dict[str, Any] = {"raw_type": "TEST", "conversation_id": C1, "timestamp_ms": AT}
    return ChatEvent(kind=kind, **{**base, **kw})


def queued(queue: str | None = None) -> NotifyBot:
    return NotifyBot(INTENT_HANDOFF_QUEUED, {"queue": queue} if queue else {})


def joined(agent: str | None = None) -> NotifyBot:
    return NotifyBot(INTENT_AGENT_JOINED, {"agent": agent} if agent else {})


def left(agent: str | None = None) -> NotifyBot:
    return NotifyBot(INTENT_AGENT_LEFT, {"agent": agent} if agent else {})


@dataclass(frozen=True)
class Row:
    start: Handoff
    input: ChatEvent | ActionInput
    state: State
    effects: tuple[Effect, ...]
    outcome: str
    fields: Mapping[str, Any] = field(default_factory=dict)  # further expected attributes


def rows(table: dict[str, Row]) -> list[Any]:
    return [pytest.param(row, id=name) for name, row in table.items()]


E = EventKind
S = State
MSG = ev(E.AGENT_MESSAGE, text="hi", **ANN)
WITH_ANN = hand(S.WITH_AGENT, queue="q1", **ANN)
TRANSFERRING = hand(S.TRANSFERRING, transfer_ms=AT - 1_000, **ANN)
ENDED_BY_AGENT = hand(S.ENDED, left_ms=AT - 10_000, **ANN)

EVENT_ROWS: dict[str, Row] = {
    # --- no live handoff: late or stray ---
    "bot: message ignored": Row(Handoff(), MSG, S.BOT, (), "ignored_no_handoff"),
    "bot with a conversation: queued ignored": Row(
        hand(S.BOT), ev(E.QUEUED, queue_name="Support"), S.BOT, (), "ignored_no_handoff"
    ),
    "bot: transfer ignored": Row(hand(S.BOT), ev(E.TRANSFER), S.BOT, (), "ignored_no_handoff"),
    "failed: join ignored": Row(
        hand(S.FAILED), ev(E.AGENT_JOINED, **ANN), S.FAILED, (), "ignored_no_handoff"
    ),
    "failed: transfer ignored": Row(
        hand(S.FAILED), ev(E.TRANSFER), S.FAILED, (), "ignored_no_handoff"
    ),
    "ended: late message ignored": Row(ENDED_BY_AGENT, MSG, S.ENDED, (), "ignored_after_end"),
    "ended: late join ignored": Row(
        ENDED_BY_AGENT, ev(E.AGENT_JOINED, agent_id="b2"), S.ENDED, (), "ignored_after_end"
    ),
    "ended: second leave ignored": Row(
        ENDED_BY_AGENT, ev(E.AGENT_LEFT, **ANN), S.ENDED, (), "ignored_after_end"
    ),
    "ended: transfer after the leave, within window -> transferring": Row(
        ENDED_BY_AGENT,
        ev(E.TRANSFER),
        S.TRANSFERRING,
        (queued(),),
        "transfer_resumed",
        {"transfer_ms": AT, "left_ms": None, "queue": "", **ANN},
    ),
    "ended: transfer timestamped before the leave, within window -> transferring": Row(
        hand(S.ENDED, left_ms=AT + 29_000, **ANN),
        ev(E.TRANSFER),
        S.TRANSFERRING,
        (queued(),),
        "transfer_resumed",
    ),
    "ended: transfer at the window's edge -> transferring": Row(
        hand(S.ENDED, left_ms=AT - 30_000),
        ev(E.TRANSFER),
        S.TRANSFERRING,
        (queued(),),
        "transfer_resumed",
    ),
    "ended: transfer outside the window ignored": Row(
        hand(S.ENDED, left_ms=AT - 30_001), ev(E.TRANSFER), S.ENDED, (), "ignored_after_end"
    ),
    "ended: without timestamp, the transfer is timed by the bridge clock": Row(
        hand(S.ENDED, left_ms=NOW - 1_000),
        ev(E.TRANSFER, timestamp_ms=None),
        S.TRANSFERRING,
        (queued(),),
        "transfer_resumed",
        {"transfer_ms": NOW},
    ),
    "ended by the user: transfer ignored": Row(
        hand(S.ENDED), ev(E.TRANSFER), S.ENDED, (), "ignored_after_end"
    ),
    "ended: transfer of another conversation ignored": Row(
        ENDED_BY_AGENT, ev(E.TRANSFER, conversation_id=C2), S.ENDED, (), "ignored_after_end"
    ),
    "ended: stale transfer ignored": Row(
        hand(S.ENDED, since_ms=NOW, left_ms=AT),
        ev(E.TRANSFER, timestamp_ms=NOW - 5_001),
        S.ENDED,
        (),
        "ignored_after_end",
    ),
    # --- every live state: wrong conversation, stale, irrelevant kinds ---
    "other conversation ignored": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, text="hi", conversation_id=C2),
        S.WITH_AGENT,
        (),
        "ignored_other_conversation",
    ),
    "event without conversation ignored": Row(
        WITH_ANN,
        ev(E.AGENT_LEFT, conversation_id=None),
        S.WITH_AGENT,
        (),
        "ignored_other_conversation",
    ),
    "stale leave ignored": Row(
        WITH_ANN,
        ev(E.AGENT_LEFT, timestamp_ms=T0 - 5_001, **ANN),
        S.WITH_AGENT,
        (),
        "ignored_stale",
    ),
    "leave inside the stale tolerance applies": Row(
        WITH_ANN,
        ev(E.AGENT_LEFT, timestamp_ms=T0 - 5_000, **ANN),
        S.ENDED,
        (left("Ann"),),
        "agent_left",
        {"left_ms": T0 - 5_000},
    ),
    "stale queued ignored while requested": Row(
        hand(S.REQUESTED),
        ev(E.QUEUED, timestamp_ms=T0 - 60_000),
        S.REQUESTED,
        (),
        "ignored_stale",
    ),
    "event without timestamp is never stale": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, text="hi", timestamp_ms=None),
        S.WITH_AGENT,
        (SayToUser("hi", "Ann"),),
        "relayed",
    ),
    **{
        f"{kind.value} ignored": Row(WITH_ANN, ev(kind, text="x"), S.WITH_AGENT, (), "ignored_kind")
        for kind in (E.ECHO, E.OTHER, E.UNKNOWN, E.VERIFY)
    },
    # --- REQUESTED ---
    "requested: created": Row(
        hand(S.REQUESTED),
        ev(E.CONVERSATION_STATE, state="created"),
        S.REQUESTED,
        (),
        "no_effect",
    ),
    "requested: active": Row(
        hand(S.REQUESTED),
        ev(E.CONVERSATION_STATE, state="active"),
        S.REQUESTED,
        (),
        "no_effect",
    ),
    "requested: idle is not taken as the end": Row(
        hand(S.REQUESTED), ev(E.CONVERSATION_STATE, state="idle"), S.REQUESTED, (), "no_effect"
    ),
    "requested: queued with a name": Row(
        hand(S.REQUESTED),
        ev(E.QUEUED, queue_id="q1", queue_name="Support"),
        S.QUEUED,
        (queued("Support"),),
        "queued",
        {"queue": "q1"},
    ),
    "requested: queued without id or name": Row(
        hand(S.REQUESTED), ev(E.QUEUED), S.QUEUED, (queued(),), "queued", {"queue": ""}
    ),
    "requested: join": Row(
        hand(S.REQUESTED),
        ev(E.AGENT_JOINED, **ANN),
        S.WITH_AGENT,
        (joined("Ann"),),
        "agent_joined",
        ANN,
    ),
    "requested: join without a name (gateway)": Row(
        hand(S.REQUESTED),
        ev(E.AGENT_JOINED, agent_id="a1"),
        S.WITH_AGENT,
        (joined(),),
        "agent_joined",
        {"agent_id": "a1", "agent_name": None},
    ),
    "requested: message before the join implies it": Row(
        hand(S.REQUESTED),
        MSG,
        S.WITH_AGENT,
        (joined("Ann"), SayToUser("hi", "Ann")),
        "implied_join",
        ANN,
    ),
    "requested: empty message ignored": Row(
        hand(S.REQUESTED),
        ev(E.AGENT_MESSAGE, text=" ", **ANN),
        S.REQUESTED,
        (),
        "ignored_empty",
    ),
    "requested: leave without a join ignored": Row(
        hand(S.REQUESTED), ev(E.AGENT_LEFT, **ANN), S.REQUESTED, (), "ignored_unexpected"
    ),
    "requested: transfer noted": Row(
        hand(S.REQUESTED), ev(E.TRANSFER), S.REQUESTED, (), "noted", {"transfer_ms": AT}
    ),
    "requested: user left (echo)": Row(
        hand(S.REQUESTED), ev(E.USER_LEFT), S.ENDED, (), "user_left", {"left_ms": None}
    ),
    "requested: typing": Row(
        hand(S.REQUESTED), ev(E.TYPING, typing=True), S.REQUESTED, (), "typing"
    ),
    # --- QUEUED ---
    "queued: same queue again is a duplicate": Row(
        hand(S.QUEUED, queue="q1"),
        ev(E.QUEUED, queue_id="q1", queue_name="Support"),
        S.QUEUED,
        (),
        "duplicate",
    ),
    "queued: no id again is a duplicate": Row(
        hand(S.QUEUED, queue="q1"), ev(E.QUEUED), S.QUEUED, (), "duplicate"
    ),
    "queued: another queue is told": Row(
        hand(S.QUEUED, queue="q1"),
        ev(E.QUEUED, queue_id="q2", queue_name="Billing"),
        S.QUEUED,
        (queued("Billing"),),
        "queued",
        {"queue": "q2"},
    ),
    "queued: a name learnt after an unnamed queued is only noted": Row(
        hand(S.QUEUED, queue=""),
        ev(E.QUEUED, queue_id="q1", queue_name="Support"),
        S.QUEUED,
        (),
        "noted",
        {"queue": "q1"},
    ),
    "queued: join": Row(
        hand(S.QUEUED, queue="q1"),
        ev(E.AGENT_JOINED, **ANN),
        S.WITH_AGENT,
        (joined("Ann"),),
        "agent_joined",
        ANN,
    ),
    "queued: message before the join implies it": Row(
        hand(S.QUEUED, queue="q1"),
        ev(E.AGENT_MESSAGE, attachments=(PIC,), **ANN),
        S.WITH_AGENT,
        (joined("Ann"), SayToUser(None, "Ann", (PIC,))),
        "implied_join",
    ),
    "queued: idle is not taken as the end": Row(
        hand(S.QUEUED), ev(E.CONVERSATION_STATE, state="idle"), S.QUEUED, (), "no_effect"
    ),
    "queued: leave without a join ignored": Row(
        hand(S.QUEUED), ev(E.AGENT_LEFT), S.QUEUED, (), "ignored_unexpected"
    ),
    "queued: transfer noted": Row(
        hand(S.QUEUED), ev(E.TRANSFER), S.QUEUED, (), "noted", {"transfer_ms": AT}
    ),
    "queued: user left (echo)": Row(hand(S.QUEUED), ev(E.USER_LEFT), S.ENDED, (), "user_left"),
    "queued: typing": Row(hand(S.QUEUED), ev(E.TYPING, typing=False), S.QUEUED, (), "typing"),
    # --- WITH_AGENT ---
    "with agent: text": Row(WITH_ANN, MSG, S.WITH_AGENT, (SayToUser("hi", "Ann"),), "relayed"),
    "with agent: attachment only": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, attachments=(PIC,), **ANN),
        S.WITH_AGENT,
        (SayToUser(None, "Ann", (PIC,)),),
        "relayed",
    ),
    "with agent: text and attachment": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, text="see", attachments=(PIC,), **ANN),
        S.WITH_AGENT,
        (SayToUser("see", "Ann", (PIC,)),),
        "relayed",
    ),
    "with agent: no text, no attachment ignored": Row(
        WITH_ANN, ev(E.AGENT_MESSAGE, **ANN), S.WITH_AGENT, (), "ignored_empty"
    ),
    "with agent: empty text ignored": Row(
        WITH_ANN, ev(E.AGENT_MESSAGE, text="", **ANN), S.WITH_AGENT, (), "ignored_empty"
    ),
    "with agent: blank text with attachment sends the attachment": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, text="  ", attachments=(PIC,), **ANN),
        S.WITH_AGENT,
        (SayToUser(None, "Ann", (PIC,)),),
        "relayed",
    ),
    "with agent: unnamed message of the agent takes the stored name": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, text="hi", agent_id="a1"),
        S.WITH_AGENT,
        (SayToUser("hi", "Ann"),),
        "relayed",
    ),
    "with agent: a name learnt from a message is kept": Row(
        hand(S.WITH_AGENT, agent_id="a1"),
        MSG,
        S.WITH_AGENT,
        (SayToUser("hi", "Ann"),),
        "relayed",
        ANN,
    ),
    "with agent: another agent's message is relayed under their name": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, text="hi", agent_id="b2", agent_name="Bob"),
        S.WITH_AGENT,
        (SayToUser("hi", "Bob"),),
        "relayed",
        ANN,
    ),
    "with agent: another unnamed agent's message gets no name": Row(
        WITH_ANN,
        ev(E.AGENT_MESSAGE, text="hi", agent_id="b2"),
        S.WITH_AGENT,
        (SayToUser("hi", None),),
        "relayed",
        ANN,
    ),
    "with agent: transfer": Row(
        WITH_ANN,
        ev(E.TRANSFER),
        S.TRANSFERRING,
        (),
        "transfer_started",
        {"transfer_ms": AT, "queue": None, **ANN},
    ),
    "with agent: leave is final": Row(
        WITH_ANN,
        ev(E.AGENT_LEFT, **ANN),
        S.ENDED,
        (left("Ann"),),
        "agent_left",
        {"left_ms": AT},
    ),
    "with agent: leave without agent id": Row(
        WITH_ANN, ev(E.AGENT_LEFT), S.ENDED, (left("Ann"),), "agent_left"
    ),
    "with agent: leave of an unnamed agent (gateway)": Row(
        hand(S.WITH_AGENT, agent_id="a1"),
        ev(E.AGENT_LEFT, agent_id="a1"),
        S.ENDED,
        (left(),),
        "agent_left",
    ),
    "with agent: another agent's leave ignored": Row(
        WITH_ANN, ev(E.AGENT_LEFT, agent_id="b2"), S.WITH_AGENT, (), "ignored_other_agent"
    ),
    "with agent: leave within the window of a transfer is not final": Row(
        hand(S.WITH_AGENT, transfer_ms=AT - 30_000, **ANN),
        ev(E.AGENT_LEFT, **ANN),
        S.TRANSFERRING,
        (),
        "transfer_not_final",
        {"left_ms": None, "queue": None},
    ),
    "with agent: leave outside the window of a transfer is final": Row(
        hand(S.WITH_AGENT, transfer_ms=AT - 30_001, **ANN),
        ev(E.AGENT_LEFT, **ANN),
        S.ENDED,
        (left("Ann"),),
        "agent_left",
    ),
    "with agent: same agent joins again": Row(
        WITH_ANN, ev(E.AGENT_JOINED, **ANN), S.WITH_AGENT, (), "duplicate"
    ),
    "with agent: same agent joins again, name learnt": Row(
        hand(S.WITH_AGENT, agent_id="a1"),
        ev(E.AGENT_JOINED, **ANN),
        S.WITH_AGENT,
        (),
        "noted",
        ANN,
    ),
    "with agent: another agent joins": Row(
        WITH_ANN,
        ev(E.AGENT_JOINED, agent_id="b2", agent_name="Bob"),
        S.WITH_AGENT,
        (joined("Bob"),),
        "agent_joined",
        {"agent_id": "b2", "agent_name": "Bob"},
    ),
    "with agent: another unnamed agent joins, old name dropped": Row(
        WITH_ANN,
        ev(E.AGENT_JOINED, agent_id="b2"),
        S.WITH_AGENT,
        (joined(),),
        "agent_joined",
        {"agent_id": "b2", "agent_name": None},
    ),
    "with agent: idle is a final leave": Row(
        WITH_ANN,
        ev(E.CONVERSATION_STATE, state="idle"),
        S.ENDED,
        (left("Ann"),),
        "agent_left",
        {"left_ms": AT},
    ),
    "with agent: idle within the window of a transfer is not final": Row(
        hand(S.WITH_AGENT, transfer_ms=AT + 1_000, **ANN),
        ev(E.CONVERSATION_STATE, state="idle"),
        S.TRANSFERRING,
        (),
        "transfer_not_final",
    ),
    "with agent: active": Row(
        WITH_ANN, ev(E.CONVERSATION_STATE, state="active"), S.WITH_AGENT, (), "no_effect"
    ),
    "with agent: user left (echo) ends silently": Row(
        WITH_ANN, ev(E.USER_LEFT), S.ENDED, (), "user_left", {"left_ms": None}
    ),
    "with agent: typing": Row(
        WITH_ANN, ev(E.TYPING, typing=True, agent_id="a1"), S.WITH_AGENT, (), "typing"
    ),
    "with agent: queued ignored": Row(
        WITH_ANN, ev(E.QUEUED, queue_id="q9"), S.WITH_AGENT, (), "ignored_unexpected"
    ),
    # --- TRANSFERRING ---
    "transferring: the old agent's leave is not final": Row(
        TRANSFERRING, ev(E.AGENT_LEFT, **ANN), S.TRANSFERRING, (), "transfer_not_final"
    ),
    "transferring: a leave long after the transfer is still not final": Row(
        TRANSFERRING,
        ev(E.AGENT_LEFT, timestamp_ms=AT + 600_000, **ANN),
        S.TRANSFERRING,
        (),
        "transfer_not_final",
    ),
    "transferring: idle is not final": Row(
        TRANSFERRING,
        ev(E.CONVERSATION_STATE, state="idle"),
        S.TRANSFERRING,
        (),
        "transfer_not_final",
    ),
    "transferring: active": Row(
        TRANSFERRING, ev(E.CONVERSATION_STATE, state="active"), S.TRANSFERRING, (), "no_effect"
    ),
    "transferring: queued is told, state stays": Row(
        TRANSFERRING,
        ev(E.QUEUED, queue_id="q2", queue_name="Billing"),
        S.TRANSFERRING,
        (queued("Billing"),),
        "queued",
        {"queue": "q2"},
    ),
    "transferring: the same queued again": Row(
        hand(S.TRANSFERRING, queue="q2"),
        ev(E.QUEUED, queue_id="q2", queue_name="Billing"),
        S.TRANSFERRING,
        (),
        "duplicate",
    ),
    "transferring: queued after the user was told of the transfer is only noted": Row(
        hand(S.TRANSFERRING, queue=""),
        ev(E.QUEUED, queue_id="q2", queue_name="Billing"),
        S.TRANSFERRING,
        (),
        "noted",
        {"queue": "q2"},
    ),
    "transferring: the next agent joins": Row(
        TRANSFERRING,
        ev(E.AGENT_JOINED, agent_id="b2", agent_name="Bob"),
        S.WITH_AGENT,
        (joined("Bob"),),
        "agent_joined",
        {"agent_id": "b2", "agent_name": "Bob"},
    ),
    "transferring: the same agent, user told nothing: resumes silently": Row(
        TRANSFERRING, ev(E.AGENT_JOINED, **ANN), S.WITH_AGENT, (), "noted"
    ),
    "transferring: the same agent, user told of the queue: announced": Row(
        hand(S.TRANSFERRING, queue="q2", **ANN),
        ev(E.AGENT_JOINED, **ANN),
        S.WITH_AGENT,
        (joined("Ann"),),
        "agent_joined",
    ),
    "transferring: the old agent's last words": Row(
        TRANSFERRING, MSG, S.TRANSFERRING, (SayToUser("hi", "Ann"),), "relayed"
    ),
    "transferring: the old agent's empty message ignored": Row(
        TRANSFERRING, ev(E.AGENT_MESSAGE, **ANN), S.TRANSFERRING, (), "ignored_empty"
    ),
    "transferring: the next agent's words before the join imply it": Row(
        TRANSFERRING,
        ev(E.AGENT_MESSAGE, text="yo", agent_id="b2", agent_name="Bob"),
        S.WITH_AGENT,
        (joined("Bob"), SayToUser("yo", "Bob")),
        "implied_join",
        {"agent_id": "b2"},
    ),
    "transferring: transfer again": Row(
        TRANSFERRING, ev(E.TRANSFER), S.TRANSFERRING, (), "duplicate"
    ),
    "transferring: user left (echo)": Row(TRANSFERRING, ev(E.USER_LEFT), S.ENDED, (), "user_left"),
    "transferring: typing": Row(
        TRANSFERRING, ev(E.TYPING, typing=True), S.TRANSFERRING, (), "typing"
    ),
}

ACTION_ROWS: dict[str, Row] = {
    "escalate from bot": Row(
        Handoff(),
        Escalated(C1, reopened=False),
        S.REQUESTED,
        (),
        "escalated",
        {"conversation_id": C1, "since_ms": NOW},
    ),
    "reopen after an agent left: the previous handoff is forgotten": Row(
        hand(S.ENDED, left_ms=AT, transfer_ms=AT, queue="q1", **ANN),
        Escalated(C1, True),
        S.REQUESTED,
        (),
        "reopened",
        {
            "since_ms": NOW,
            "agent_id": None,
            "agent_name": None,
            "left_ms": None,
            "transfer_ms": None,
            "queue": None,
        },
    ),
    "escalate after a failure": Row(
        hand(S.FAILED),
        Escalated(C2, False),
        S.REQUESTED,
        (),
        "escalated",
        {"conversation_id": C2},
    ),
    "escalate while requested: duplicate": Row(
        hand(S.REQUESTED), Escalated(C1, False), S.REQUESTED, (), "duplicate"
    ),
    "escalate while with an agent: duplicate": Row(
        WITH_ANN, Escalated(C1, True), S.WITH_AGENT, (), "duplicate", ANN
    ),
    "escalate on a new conversation while live replaces it": Row(
        WITH_ANN,
        Escalated(C2, False),
        S.REQUESTED,
        (),
        "escalated",
        {"conversation_id": C2, "agent_id": None},
    ),
    "failure from bot": Row(Handoff(), EscalationFailed("down"), S.FAILED, (), "failed"),
    "failure after an end": Row(hand(S.ENDED), EscalationFailed("gone"), S.FAILED, (), "failed"),
    "failure again": Row(hand(S.FAILED), EscalationFailed("down"), S.FAILED, (), "duplicate"),
    "failure while live is ignored": Row(
        hand(S.QUEUED), EscalationFailed("x"), S.QUEUED, (), "ignored_active"
    ),
    **{
        f"user ends while {state.value}": Row(
            hand(state, left_ms=None, **ANN), UserEnded(), S.ENDED, (), "ended", {"left_ms": None}
        )
        for state in (S.REQUESTED, S.QUEUED, S.WITH_AGENT, S.TRANSFERRING)
    },
    "the user's turn reaches the agent": Row(
        WITH_ANN, UserSpoke(), S.WITH_AGENT, (), "user_spoke", {"user_ms": NOW}
    ),
    "the user's turn with no handoff": Row(Handoff(), UserSpoke(), S.BOT, (), "ignored_no_handoff"),
    **{
        f"user ends while {state.value}: nothing to end": Row(
            hand(state), UserEnded(), state, (), "ignored_no_handoff"
        )
        for state in (S.BOT, S.ENDED, S.FAILED)
    },
}


def _apply(h: Handoff, item: ChatEvent | ActionInput, now_ms: int) -> Step:
    if isinstance(item, ChatEvent):
        return on_event(h, item, now_ms)
    return on_action(h, item, now_ms)


@pytest.mark.parametrize("row", rows(EVENT_ROWS) + rows(ACTION_ROWS))
def test_transition(row: Row) -> None:
    step = _apply(row.start, row.input, NOW)
    assert (step.handoff.state, step.effects, step.outcome) == (
        row.state,
        row.effects,
        row.outcome,
    )
    for name, value in row.fields.items():
        assert getattr(step.handoff, name) == value, name
    if replace(step.handoff, changed_ms=row.start.changed_ms) == row.start:
        assert step.handoff is row.start  # nothing changed: the caller can skip the write
    else:
        assert step.handoff.changed_ms == NOW
    if step.outcome.startswith("ignored"):
        assert step.handoff is row.start


def test_every_outcome_label_is_exercised_by_the_tables() -> None:
    from tests.test_handoff_timers import TIMER_ROWS, apply_timer

    table = (*EVENT_ROWS.values(), *ACTION_ROWS.values())
    seen = {_apply(r.start, r.input, NOW).outcome for r in table}
    seen |= {apply_timer(r).outcome for r in TIMER_ROWS.values()}
    assert seen == OUTCOMES


def test_timing_is_configurable() -> None:
    start = hand(S.ENDED, left_ms=AT - 40_000)
    assert on_event(start, ev(E.TRANSFER), NOW).outcome == "ignored_after_end"
    step = on_event(start, ev(E.TRANSFER), NOW, Timing(transfer_window_ms=60_000))
    assert step.outcome == "transfer_resumed"
    stale = ev(E.AGENT_LEFT, timestamp_ms=T0 - 8_000, **ANN)
    assert on_event(WITH_ANN, stale, NOW).outcome == "ignored_stale"
    assert on_event(WITH_ANN, stale, NOW, Timing(stale_tolerance_ms=10_000)).outcome == "agent_left"


# --- storage ---


def test_fields_are_flat_strings_without_empty_values() -> None:
    h = hand(S.WITH_AGENT, agent_id="a1", transfer_ms=5)
    assert h.to_fields() == {
        "state": "with_agent",
        "conversation_id": "c1",  # the name the store's `link` writes
        "agent_id": "a1",
        "since_ms": str(T0),
        "changed_ms": str(T0),
        "transfer_ms": "5",
    }
    assert Handoff().to_fields() == {"state": "bot", "since_ms": "0", "changed_ms": "0"}


def test_from_fields_is_tolerant() -> None:
    assert Handoff.from_fields({}) == Handoff()
    odd = {"state": "from_the_future", "since_ms": "soon", "left_ms": "", "extra": "x"}
    assert Handoff.from_fields(odd) == Handoff()
    partial = {"state": "queued", "conversation_id": "c1", "transfer_ms": "12"}
    assert Handoff.from_fields(partial) == Handoff(
        state=S.QUEUED, conversation_id=C1, transfer_ms=12
    )


@pytest.mark.parametrize("state", list(State))
def test_active_states(state: State) -> None:
    expected = state in {S.REQUESTED, S.QUEUED, S.WITH_AGENT, S.TRANSFERRING}
    assert Handoff(state=state).active is expected


# --- whole lifecycles, from real-shaped webhook bodies of both families ---

CONV = "Aka5NMHU8MtIG7lUQOxI0DTOvM4"
CID = ConversationId(CONV)


def v2(event_type: str, ts: int, **body: Any) -> ChatEvent:
    return parse_event({"eventType": event_type, "conversationId": CONV, "timestamp": ts, **body})


def gw(event_type: str, ts: int, data: dict[str, Any] | None = None) -> ChatEvent:
    body: dict[str, Any] = {"eventType": event_type, "conversationId": CONV, "timestamp": ts}
    return parse_event(body if data is None else {**body, "data": data})


def v2_joined(ts: int, agent: str = "cmalutan", name: str = "Cosmin") -> ChatEvent:
    return v2("AGENT_JOINED", ts, messageType="SYSTEM", agentId=agent, agentName=name)


def v2_left(ts: int, agent: str = "cmalutan", name: str = "Cosmin") -> ChatEvent:
    return v2("AGENT_LEFT", ts, messageType="SYSTEM", agentId=agent, agentName=name)


def v2_text(ts: int, text: str, agent: str = "cmalutan", name: str = "Cosmin") -> ChatEvent:
    return v2("TEXT", ts, messageType="AGENT", agentId=agent, agentName=name, message=text)


def v2_queued(ts: int, queue: str = "101", name: str = "Support") -> ChatEvent:
    return v2("QUEUED", ts, messageType="SYSTEM", queueId=queue, queueName=name)


def gw_member(ts: int, change: str, agent: str = "agent-1", member: str = "agent") -> ChatEvent:
    return gw("MEMBERS_CHANGED", ts, {"memberType": member, "change": change, "id": agent})


def gw_state(ts: int, state: str) -> ChatEvent:
    return gw("CONVERSATION_UPDATE", ts, {"state": state, "assignment": {"type": "queue"}})


def gw_queued(ts: int, queue: str = "queue-1", name: str = "Support") -> ChatEvent:
    return gw("QUEUED", ts, {"queueId": queue, "queueName": name})


def gw_typing(ts: int, agent: str = "agent-1") -> ChatEvent:
    return gw(
        "ACTIVITY", ts, {"name": "typing", "value": {"users": [{"type": "agent", "id": agent}]}}
    )


def gw_message(ts: int, text: str | None, agent: str = "agent-1", **data: Any) -> ChatEvent:
    sender = {"id": agent, "type": "agent"}
    return gw("MESSAGE", ts, {"isEcho": False, "sender": sender, "text": text, **data})


Script = Sequence[tuple[int, ChatEvent | ActionInput]]  # (bridge clock, input)


def play(script: Script, start: Handoff | None = None) -> tuple[Handoff, list[Step]]:
    h, steps = start or Handoff(), []
    for now_ms, item in script:
        step = _apply(h, item, now_ms)
        assert step.outcome in OUTCOMES
        assert Handoff.from_fields(step.handoff.to_fields()) == step.handoff
        h = step.handoff
        steps.append(step)
    return h, steps


def effects_of(steps: list[Step]) -> list[Effect]:
    return [e for s in steps for e in s.effects]


def outcomes_of(steps: list[Step]) -> list[str]:
    return [s.outcome for s in steps]


def at(ts: int, item: ChatEvent | ActionInput) -> tuple[int, ChatEvent | ActionInput]:
    """Delivered 200 ms after 8x8 stamped it."""
    return ts + 200, item


def test_v2_lifecycle() -> None:
    t = T0
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 1_000, v2_queued(t + 1_000)),
            at(t + 9_000, v2_joined(t + 9_000)),
            at(t + 10_000, v2_text(t + 10_000, "Hello")),
            at(t + 11_000, v2_text(t + 11_000, "How can I help?")),
            at(t + 90_000, v2_left(t + 90_000)),
        ]
    )
    assert h.state is S.ENDED
    assert effects_of(steps) == [
        queued("Support"),
        joined("Cosmin"),
        SayToUser("Hello", "Cosmin"),
        SayToUser("How can I help?", "Cosmin"),
        left("Cosmin"),
    ]
    assert h.left_ms == t + 90_000


def test_gateway_lifecycle() -> None:
    t = T0
    att = {
        "id": "att-001",
        "type": "image",
        "preSignedUrl": "https://s.example/a1?sig=x",
        "fileName": "screenshot.png",
    }
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 100, gw_state(t + 100, "created")),
            at(t + 200, gw_state(t + 200, "active")),
            at(t + 300, gw_queued(t + 300)),
            at(t + 5_000, gw_member(t + 5_000, "joined")),
            at(t + 5_500, gw_typing(t + 5_500)),
            at(t + 6_000, gw_message(t + 6_000, "Hi, I'm here", attachments=[att])),
            at(t + 6_100, gw("MESSAGE", t + 6_100, {"isEcho": True, "text": "user said"})),
            at(t + 60_000, gw_member(t + 60_000, "left")),
            at(t + 60_100, gw_state(t + 60_100, "idle")),
        ]
    )
    pic = Attachment(
        url="https://s.example/a1?sig=x", name="screenshot.png", type="image", id="att-001"
    )
    assert effects_of(steps) == [
        queued("Support"),
        joined(),
        SayToUser("Hi, I'm here", None, (pic,)),
        left(),
    ]
    assert outcomes_of(steps) == [
        "escalated",
        "no_effect",
        "no_effect",
        "queued",
        "agent_joined",
        "typing",
        "relayed",
        "ignored_kind",
        "agent_left",
        "ignored_after_end",
    ]
    assert h.state is S.ENDED


def test_gateway_idle_alone_ends_the_handoff() -> None:
    t = T0
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 5_000, gw_member(t + 5_000, "joined")),
            at(t + 60_000, gw_state(t + 60_000, "idle")),
            at(t + 60_100, gw_member(t + 60_100, "left")),
        ]
    )
    assert effects_of(steps) == [joined(), left()]
    assert h.state is S.ENDED


def test_v2_transfer_announced_before_the_leave() -> None:
    t = T0
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 1_000, v2_queued(t + 1_000)),
            at(t + 2_000, v2_joined(t + 2_000)),
            at(t + 3_000, v2_text(t + 3_000, "Let me transfer you")),
            at(t + 4_000, v2("TRANSFER", t + 4_000, messageType="SYSTEM")),
            at(t + 4_001, v2_left(t + 4_001)),
            at(t + 5_000, v2_queued(t + 5_000, "102", "Billing")),
            at(t + 80_000, v2_joined(t + 80_000, "bob", "Bob")),
            at(t + 81_000, v2_text(t + 81_000, "Billing here", "bob", "Bob")),
            at(t + 200_000, v2_left(t + 200_000, "bob", "Bob")),
        ]
    )
    assert effects_of(steps) == [
        queued("Support"),
        joined("Cosmin"),
        SayToUser("Let me transfer you", "Cosmin"),
        queued("Billing"),
        joined("Bob"),
        SayToUser("Billing here", "Bob"),
        left("Bob"),
    ]
    assert "transfer_not_final" in outcomes_of(steps)
    assert h.state is S.ENDED


def test_gateway_transfer_announced_after_the_leave() -> None:
    t = T0
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 1_000, gw_queued(t + 1_000)),
            at(t + 2_000, gw_member(t + 2_000, "joined", "agent-1")),
            at(t + 4_000, gw_member(t + 4_000, "left", "agent-1")),
            at(t + 4_050, gw_state(t + 4_050, "idle")),
            at(t + 4_100, gw("TRANSFER", t + 4_100)),
            at(t + 4_200, gw_queued(t + 4_200, "queue-2", "Billing")),
            at(t + 50_000, gw_member(t + 50_000, "joined", "agent-2")),
            at(t + 51_000, gw_message(t + 51_000, "Billing here", "agent-2")),
        ]
    )
    # The leave looked final, so the user heard it; the TRANSFER takes it back once, and the
    # target queue's QUEUED is not announced a second time.
    assert effects_of(steps) == [
        queued("Support"),
        joined(),
        left(),
        queued(),
        joined(),
        SayToUser("Billing here", None),
    ]
    assert outcomes_of(steps)[4:7] == ["ignored_after_end", "transfer_resumed", "noted"]
    assert (h.state, h.agent_id) == (S.WITH_AGENT, "agent-2")


def test_transfer_reordered_old_leave_after_new_join() -> None:
    t = T0
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 2_000, v2_joined(t + 2_000)),
            at(t + 4_000, v2("TRANSFER", t + 4_000)),
            at(t + 5_000, v2_queued(t + 5_000, "102", "Billing")),
            at(t + 9_000, v2_joined(t + 9_000, "bob", "Bob")),
            (t + 9_500, v2_left(t + 4_001)),  # the old agent's leave, delivered late
            at(t + 10_000, v2_text(t + 10_000, "Hi", "bob", "Bob")),
        ]
    )
    assert effects_of(steps) == [
        joined("Cosmin"),
        queued("Billing"),
        joined("Bob"),
        SayToUser("Hi", "Bob"),
    ]
    assert outcomes_of(steps)[5] == "ignored_other_agent"
    assert (h.state, h.agent_name) == (S.WITH_AGENT, "Bob")


def test_transfer_before_the_join_is_remembered() -> None:
    t = T0
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 1_000, v2_queued(t + 1_000)),
            (t + 3_000, v2("TRANSFER", t + 2_500)),  # overtook the join
            (t + 3_100, v2_joined(t + 2_000)),
            at(t + 2_501, v2_left(t + 2_501)),
            at(t + 9_000, v2_queued(t + 9_000, "102", "Billing")),
            at(t + 20_000, v2_joined(t + 20_000, "bob", "Bob")),
        ]
    )
    assert effects_of(steps) == [
        queued("Support"),
        joined("Cosmin"),
        queued("Billing"),
        joined("Bob"),
    ]
    assert h.state is S.WITH_AGENT


def test_reopen_after_leave() -> None:
    t = T0
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 1_000, v2_queued(t + 1_000)),
            at(t + 2_000, v2_joined(t + 2_000)),
            at(t + 60_000, v2_left(t + 60_000)),
            (t + 600_000, Escalated(CID, reopened=True)),
            at(t + 601_000, v2_queued(t + 601_000)),
            at(t + 602_000, v2_joined(t + 602_000, "bob", "Bob")),
            at(t + 603_000, v2_text(t + 603_000, "Welcome back", "bob", "Bob")),
        ]
    )
    assert effects_of(steps) == [
        queued("Support"),
        joined("Cosmin"),
        left("Cosmin"),
        queued("Support"),  # a new wait: told again, although it is the same queue
        joined("Bob"),
        SayToUser("Welcome back", "Bob"),
    ]
    assert outcomes_of(steps)[4] == "reopened"
    assert (h.state, h.since_ms) == (S.WITH_AGENT, t + 600_000)


def test_stale_events_after_reopen_are_ignored() -> None:
    t = T0
    reopen_at = t + 600_000
    h, steps = play(
        [
            (t, Escalated(CID, reopened=False)),
            at(t + 2_000, v2_joined(t + 2_000)),
            (t + 3_000, UserEnded()),
            (reopen_at, Escalated(CID, reopened=True)),
            # 8x8 retries the first interaction's events after the reopen:
            (reopen_at + 1_000, v2_left(t + 3_100)),
            (reopen_at + 1_100, v2_text(t + 2_500, "old words")),
            at(reopen_at + 2_000, v2_queued(reopen_at + 2_000)),
            (reopen_at + 3_000, v2_left(t + 3_100)),
            at(reopen_at + 4_000, v2_joined(reopen_at + 4_000)),
        ]
    )
    assert outcomes_of(steps) == [
        "escalated",
        "agent_joined",
        "ended",
        "reopened",
        "ignored_stale",
        "ignored_stale",
        "queued",
        "ignored_stale",
        "agent_joined",
    ]
    assert effects_of(steps) == [joined("Cosmin"), queued("Support"), joined("Cosmin")]
    assert h.state is S.WITH_AGENT


def test_events_of_an_abandoned_conversation_are_ignored() -> None:
    old = parse_event(
        {
            "eventType": "TEXT",
            "conversationId": "old",
            "timestamp": T0 + 5_000,
            "agentId": "x",
            "agentName": "X",
            "message": "hello?",
        }
    )
    h, steps = play([(T0, Escalated(CID, reopened=False)), at(T0 + 5_000, old)])
    assert outcomes_of(steps) == ["escalated", "ignored_other_conversation"]
    assert effects_of(steps) == []
    assert h.state is S.REQUESTED


def test_duplicate_deliveries_are_silent() -> None:
    t = T0
    script = [
        at(t + 1_000, v2_queued(t + 1_000)),
        at(t + 2_000, v2_joined(t + 2_000)),
        at(t + 3_000, v2("TRANSFER", t + 3_000)),
        at(t + 3_001, v2_left(t + 3_001)),
        at(t + 4_000, v2_queued(t + 4_000, "102", "Billing")),
        at(t + 9_000, v2_joined(t + 9_000, "bob", "Bob")),
        at(t + 90_000, v2_left(t + 90_000, "bob", "Bob")),
    ]
    doubled: list[tuple[int, ChatEvent | ActionInput]] = [
        (t, Escalated(CID, False)),
        (t, Escalated(CID, False)),
    ]
    doubled += [entry for entry in script for entry in (entry, (entry[0] + 50, entry[1]))]
    doubled += [(t + 100_000, UserEnded()), (t + 100_000, UserEnded())]
    h, steps = play(doubled)
    once, _ = play([(t, Escalated(CID, False)), *script])
    assert effects_of(steps) == [
        queued("Support"),
        joined("Cosmin"),
        queued("Billing"),
        joined("Bob"),
        left("Bob"),
    ]
    assert h.state is once.state is S.ENDED


def test_a_repeated_agent_message_is_relayed_again() -> None:
    """Documented limit: a message carries no id the state could remember; the webhook door
    dedupes 8x8's retries by event id before the machine sees them."""
    step = on_event(WITH_ANN, MSG, NOW)
    again = on_event(step.handoff, MSG, NOW)
    assert again.effects == (SayToUser("hi", "Ann"),)


# --- properties over random inputs ---

_agents = st.sampled_from([None, "a1", "b2"])
_names = st.sampled_from([None, "Ann", "Bob"])
_events = st.builds(
    ChatEvent,
    kind=st.sampled_from(list(EventKind)),
    raw_type=st.just("X"),
    conversation_id=st.sampled_from([C1, C1, C1, C2, None]),
    timestamp_ms=st.none() | st.integers(T0 - 60_000, T0 + 600_000),
    agent_id=_agents,
    agent_name=_names,
    text=st.sampled_from([None, "", " ", "hi"]),
    queue_id=st.sampled_from([None, "q1", "q2"]),
    queue_name=st.sampled_from([None, "Support", "Billing"]),
    state=st.sampled_from([None, "created", "active", "idle", "weird"]),
    typing=st.none() | st.booleans(),
    attachments=st.sampled_from([(), (PIC,)]),
)
_actions = st.one_of(
    st.builds(Escalated, st.sampled_from([C1, C2]), st.booleans()),
    st.builds(EscalationFailed, st.text(max_size=5)),
    st.just(UserEnded()),
)
_inputs = st.lists(
    st.tuples(st.integers(0, 120_000), st.one_of(_events, _events, _events, _actions)),
    max_size=40,
)
_opt_text = st.none() | st.text(max_size=8)
_opt_int = st.none() | st.integers(-(2**63), 2**63)
_handoffs = st.builds(
    Handoff,
    state=st.sampled_from(list(State)),
    conversation_id=st.none() | st.text(max_size=8).map(ConversationId),
    agent_name=_opt_text,
    agent_id=_opt_text,
    since_ms=st.integers(-(2**63), 2**63),
    changed_ms=st.integers(-(2**63), 2**63),
    transfer_ms=_opt_int,
    left_ms=_opt_int,
    queue=_opt_text,
)
_INTENT_STATES = {
    INTENT_HANDOFF_QUEUED: {S.QUEUED, S.TRANSFERRING},
    INTENT_AGENT_JOINED: {S.WITH_AGENT},
    INTENT_AGENT_LEFT: {S.ENDED},
}


def _check(
    before: Handoff, item: ChatEvent | ActionInput, step: Step, *, reachable: bool = True
) -> None:
    h = step.handoff
    assert step.outcome in OUTCOMES
    assert Handoff.from_fields(h.to_fields()) == h
    if reachable:  # a live handoff always knows its conversation (records read back may not)
        assert not h.active or h.conversation_id is not None
    if step.outcome.startswith("ignored"):
        assert h is before and step.effects == ()
    for effect in step.effects:
        if isinstance(effect, NotifyBot):
            assert h.state in _INTENT_STATES[effect.intent]
        else:
            assert isinstance(item, ChatEvent) and item.kind is EventKind.AGENT_MESSAGE
            assert h.active and (effect.text or effect.attachments)


@settings(max_examples=500)
@given(_inputs)
def test_any_sequence_never_raises_and_keeps_invariants(inputs: list[tuple[int, Any]]) -> None:
    h, now = Handoff(), T0
    for dt, item in inputs:
        now += dt
        step = _apply(h, item, now)
        _check(h, item, step)
        if not (isinstance(item, ChatEvent) and item.kind is EventKind.AGENT_MESSAGE):
            # the same input again, at once: never a second user-visible effect
            assert _apply(step.handoff, item, now).effects == ()
        h = step.handoff


@settings(max_examples=300)
@given(_handoffs, st.lists(_events, max_size=10))
def test_any_stored_record_accepts_any_event(h: Handoff, events: list[ChatEvent]) -> None:
    for event in events:
        step = on_event(h, event, NOW)
        _check(h, event, step, reachable=False)
        h = step.handoff


@given(_handoffs)
def test_fields_round_trip(h: Handoff) -> None:
    stored = h.to_fields()
    assert all(isinstance(v, str) for v in stored.values())
    assert set(stored) <= {f.name for f in fields(Handoff)}
    assert Handoff.from_fields(stored) == h


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=12)))
def test_from_fields_never_raises(d: dict[str, str]) -> None:
    assert isinstance(Handoff.from_fields(d), Handoff)
