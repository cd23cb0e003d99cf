"""The handoff's timers in the state machine: transition tables (as tests/test_handoff.py), the
arming done by escalations and joins, and the race of a timer with an agent's join at the same
instant, in both orders of the partition stream."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.handoff import (
    INTENT_AGENT_JOINED,
    INTENT_AGENT_SILENT,
    INTENT_QUEUE_REMINDER,
    INTENT_QUEUE_TIMEOUT,
    INTENT_USER_SILENT,
    USER_SILENT_NOTE,
    ArmTimer,
    DisarmTimer,
    Effect,
    EndInteraction,
    Escalated,
    Handoff,
    NotifyBot,
    State,
    Step,
    TimerFired,
    TimerKind,
    Timing,
    UserEnded,
    UserSpoke,
    agent_words_grain_ms,
    on_action,
    on_event,
    on_timer,
)
from bridge.ids import ConversationId

C1 = ConversationId("c1")
C2 = ConversationId("c2")
T0 = 1_700_000_000_000
NOW = T0 + 3_600_000
S = State
K = TimerKind
TIMING = Timing(
    queue_timeout_ms=600_000,
    queue_reminder_ms=60_000,
    agent_silence_ms=120_000,
    user_silence_ms=300_000,
)
ANN = {"agent_id": "a1", "agent_name": "Ann"}


def hand(state: State, *armed: TimerKind, **kw: Any) -> Handoff:
    """A handoff with each of `armed` live, due NOW."""
    base: dict[str, Any] = {"conversation_id": C1, "since_ms": T0, "changed_ms": T0}
    h = Handoff(state=state, **{**base, **kw})
    for kind in armed:
        h = h.with_timer(kind, NOW)
    return h


def fired(kind: TimerKind, due_ms: int = NOW, **kw: Any) -> TimerFired:
    base: dict[str, Any] = {"conversation_id": C1, "since_ms": T0, "due_ms": due_ms}
    return TimerFired(kind=kind, **{**base, **kw})


def arm(kind: TimerKind, due_ms: int) -> ArmTimer:
    return ArmTimer(TimerFired(kind, C1, T0, due_ms))


def disarm(kind: TimerKind, due_ms: int = NOW) -> DisarmTimer:
    return DisarmTimer(TimerFired(kind, C1, T0, due_ms))


@dataclass(frozen=True)
class Row:
    start: Handoff
    input: TimerFired
    state: State
    effects: tuple[Effect, ...]
    outcome: str
    fields: dict[str, Any] = field(default_factory=dict)
    timing: Timing = TIMING


def apply_timer(row: Row) -> Step:
    return on_timer(row.start, row.input, NOW, row.timing)


WITH_ANN = hand(S.WITH_AGENT, K.AGENT_SILENCE, K.USER_SILENCE, **ANN)
LONG_AGO = NOW - 1_000_000
RECENT = NOW - 10_000

TIMER_ROWS: dict[str, Row] = {
    # --- stale: never acts ---
    "another handoff's timer (reopened since) ignored": Row(
        hand(S.QUEUED, K.QUEUE_TIMEOUT), fired(K.QUEUE_TIMEOUT, since_ms=T0 - 1), S.QUEUED, (),
        "ignored_timer",
    ),
    # The store keeps one arming per kind and handoff: a stale one that fired may have fired in
    # place of the live one, which is therefore armed again.
    "a re-armed timer's earlier arming ignored, the live one armed again": Row(
        hand(S.QUEUED, K.QUEUE_TIMEOUT), fired(K.QUEUE_TIMEOUT, due_ms=NOW - 5), S.QUEUED,
        (arm(K.QUEUE_TIMEOUT, NOW),), "ignored_timer",
    ),
    "a later arming than the live one ignored, the live one armed again": Row(
        hand(S.WITH_AGENT, K.USER_SILENCE), fired(K.USER_SILENCE, due_ms=NOW + 5), S.WITH_AGENT,
        (arm(K.USER_SILENCE, NOW),), "ignored_timer",
    ),
    "another handoff's earlier arming arms nothing": Row(
        hand(S.QUEUED, K.QUEUE_TIMEOUT), fired(K.QUEUE_TIMEOUT, due_ms=NOW - 5, since_ms=T0 - 1),
        S.QUEUED, (), "ignored_timer",
    ),
    "an ended handoff's stale arming arms nothing": Row(
        hand(S.ENDED, K.USER_SILENCE), fired(K.USER_SILENCE, due_ms=NOW - 5), S.ENDED, (),
        "ignored_timer",
    ),
    "another conversation's timer ignored": Row(
        hand(S.QUEUED, K.QUEUE_TIMEOUT), fired(K.QUEUE_TIMEOUT, conversation_id=C2), S.QUEUED,
        (), "ignored_timer",
    ),
    "a cleared timer ignored": Row(
        hand(S.QUEUED), fired(K.QUEUE_TIMEOUT), S.QUEUED, (), "ignored_timer"
    ),
    **{
        f"{state.value}: any timer ignored": Row(
            hand(state, K.QUEUE_TIMEOUT), fired(K.QUEUE_TIMEOUT), state, (), "ignored_timer"
        )
        for state in (S.BOT, S.ENDED, S.FAILED)
    },
    # --- queue timeout ---
    **{
        f"{state.value}: queue timeout ends the handoff": Row(
            hand(state, K.QUEUE_TIMEOUT, K.QUEUE_REMINDER), fired(K.QUEUE_TIMEOUT), S.ENDED,
            # The reminder is forgotten; the timeout left the set as it fired.
            (NotifyBot(INTENT_QUEUE_TIMEOUT, {}), EndInteraction(), disarm(K.QUEUE_REMINDER)),
            "queue_timeout",
            {"timers": (), "left_ms": None},
        )
        for state in (S.REQUESTED, S.QUEUED)
    },
    "with agent: a queue timeout still armed is ignored": Row(
        hand(S.WITH_AGENT, K.QUEUE_TIMEOUT, **ANN), fired(K.QUEUE_TIMEOUT), S.WITH_AGENT, (),
        "ignored_timer",
    ),
    "transferring: queue timeout ignored (an agent moved the chat on)": Row(
        hand(S.TRANSFERRING, K.QUEUE_TIMEOUT), fired(K.QUEUE_TIMEOUT), S.TRANSFERRING, (),
        "ignored_timer",
    ),
    # --- queue reminder ---
    "queued: reminder, the next one armed an interval from now": Row(
        hand(S.QUEUED, K.QUEUE_REMINDER), fired(K.QUEUE_REMINDER), S.QUEUED,
        (NotifyBot(INTENT_QUEUE_REMINDER, {}), arm(K.QUEUE_REMINDER, NOW + 60_000)),
        "queue_reminder", {"timers": ((K.QUEUE_REMINDER, NOW + 60_000),)},
    ),
    "requested: a late reminder still arms the next a full interval later": Row(
        hand(S.REQUESTED, K.QUEUE_REMINDER), fired(K.QUEUE_REMINDER), S.REQUESTED,
        (NotifyBot(INTENT_QUEUE_REMINDER, {}), arm(K.QUEUE_REMINDER, NOW + 60_000)),
        "queue_reminder",
    ),
    "queued: reminder with reminders since switched off arms no next one": Row(
        hand(S.QUEUED, K.QUEUE_REMINDER), fired(K.QUEUE_REMINDER), S.QUEUED,
        (NotifyBot(INTENT_QUEUE_REMINDER, {}),), "queue_reminder", {"timers": ()},
        Timing(),
    ),
    "with agent: reminder ignored": Row(
        hand(S.WITH_AGENT, K.QUEUE_REMINDER), fired(K.QUEUE_REMINDER), S.WITH_AGENT, (),
        "ignored_timer",
    ),
    # --- agent silence ---
    "agent silence: the user's turn unanswered too long": Row(
        replace(WITH_ANN, agent_ms=LONG_AGO - 1, user_ms=LONG_AGO), fired(K.AGENT_SILENCE),
        S.WITH_AGENT,
        (NotifyBot(INTENT_AGENT_SILENT, {"agent": "Ann"}), arm(K.AGENT_SILENCE, NOW + 120_000)),
        "agent_silent",
    ),
    "agent silence: the user's turn is recent, looks again when it would be due": Row(
        replace(WITH_ANN, agent_ms=LONG_AGO, user_ms=RECENT), fired(K.AGENT_SILENCE),
        S.WITH_AGENT, (arm(K.AGENT_SILENCE, RECENT + 120_000),), "timer_rearmed",
    ),
    "agent silence: the agent spoke last, nothing to wait for": Row(
        replace(WITH_ANN, agent_ms=LONG_AGO, user_ms=LONG_AGO - 1), fired(K.AGENT_SILENCE),
        S.WITH_AGENT, (arm(K.AGENT_SILENCE, NOW + 120_000),), "timer_rearmed",
    ),
    "agent silence: switched off": Row(
        replace(WITH_ANN, user_ms=LONG_AGO), fired(K.AGENT_SILENCE), S.WITH_AGENT, (),
        "ignored_timer", {}, Timing(),
    ),
    "transferring: agent silence ignored (the next join re-arms it)": Row(
        hand(S.TRANSFERRING, K.AGENT_SILENCE, user_ms=LONG_AGO), fired(K.AGENT_SILENCE),
        S.TRANSFERRING, (), "ignored_timer",
    ),
    # --- user silence ---
    "user silence: the agent's word unanswered too long closes on both sides": Row(
        replace(WITH_ANN, agent_ms=LONG_AGO, user_ms=LONG_AGO - 1), fired(K.USER_SILENCE),
        S.ENDED,
        (NotifyBot(INTENT_USER_SILENT, {"agent": "Ann"}), EndInteraction(USER_SILENT_NOTE),
         disarm(K.AGENT_SILENCE)),
        "user_silent", {"timers": (), "left_ms": None},
    ),
    "user silence: the agent spoke recently, looks again when it would be due": Row(
        replace(WITH_ANN, agent_ms=RECENT), fired(K.USER_SILENCE), S.WITH_AGENT,
        (arm(K.USER_SILENCE, RECENT + 300_000),), "timer_rearmed",
    ),
    "user silence: the user spoke last, it is the agent's turn": Row(
        replace(WITH_ANN, agent_ms=LONG_AGO - 1, user_ms=LONG_AGO), fired(K.USER_SILENCE),
        S.WITH_AGENT, (arm(K.USER_SILENCE, NOW + 300_000),), "timer_rearmed",
    ),
    "user silence: switched off": Row(
        replace(WITH_ANN, agent_ms=LONG_AGO), fired(K.USER_SILENCE), S.WITH_AGENT, (),
        "ignored_timer", {}, Timing(),
    ),
}  # fmt: skip


@pytest.mark.parametrize("row", [pytest.param(r, id=n) for n, r in TIMER_ROWS.items()])
def test_timer_transition(row: Row) -> None:
    step = apply_timer(row)
    assert (step.handoff.state, step.effects, step.outcome) == (
        row.state,
        row.effects,
        row.outcome,
    )
    for name, value in row.fields.items():
        assert getattr(step.handoff, name) == value, name
    if step.outcome.startswith("ignored"):
        assert step.handoff is row.start
    else:
        assert step.handoff.changed_ms == NOW


def test_an_escalation_arms_the_queue_timers_it_is_configured_for() -> None:
    step = on_action(Handoff(), Escalated(C1, reopened=False), NOW, TIMING)
    assert step.effects == (
        ArmTimer(TimerFired(K.QUEUE_TIMEOUT, C1, NOW, NOW + 600_000)),
        ArmTimer(TimerFired(K.QUEUE_REMINDER, C1, NOW, NOW + 60_000)),
    )
    assert step.handoff.due(K.QUEUE_TIMEOUT) == NOW + 600_000
    assert on_action(Handoff(), Escalated(C1, reopened=False), NOW).effects == ()


def test_a_reopen_makes_the_previous_handoffs_timers_stale() -> None:
    first = on_action(Handoff(), Escalated(C1, reopened=False), T0, TIMING).handoff
    ended = on_action(first, UserSpoke(), T0 + 1, TIMING).handoff
    again = on_action(replace(ended, state=S.ENDED), Escalated(C1, True), NOW, TIMING).handoff
    old = TimerFired(K.QUEUE_TIMEOUT, C1, T0, T0 + 600_000)
    assert on_timer(again, old, T0 + 600_000, TIMING).outcome == "ignored_timer"


def _join(at: int) -> ChatEvent:
    return ChatEvent(EventKind.AGENT_JOINED, "TEST", C1, at, **ANN)


def _said(at: int) -> ChatEvent:
    return ChatEvent(EventKind.AGENT_MESSAGE, "TEST", C1, at, text="hi", **ANN)


def test_a_join_clears_the_queue_timers_and_arms_the_silence_timers() -> None:
    queued = hand(S.QUEUED, K.QUEUE_TIMEOUT, K.QUEUE_REMINDER)
    step = on_event(queued, _join(NOW), NOW, TIMING)
    assert step.effects == (
        NotifyBot(INTENT_AGENT_JOINED, {"agent": "Ann"}),
        arm(K.AGENT_SILENCE, NOW + 120_000),
        arm(K.USER_SILENCE, NOW + 300_000),
        disarm(K.QUEUE_REMINDER),  # in the record's order of kinds
        disarm(K.QUEUE_TIMEOUT),
    )
    assert step.handoff.due(K.QUEUE_TIMEOUT) is None
    assert step.handoff.due(K.QUEUE_REMINDER) is None
    assert (step.handoff.agent_ms, step.handoff.user_ms) == (NOW, None)


def test_an_agent_message_and_a_user_turn_move_the_silence_clocks() -> None:
    h = on_event(hand(S.QUEUED), _join(T0), T0, TIMING).handoff
    said = ChatEvent(EventKind.AGENT_MESSAGE, "TEST", C1, NOW - 5, text="hi", **ANN)
    h = on_event(h, said, NOW - 5, TIMING).handoff
    assert h.agent_ms == NOW - 5
    assert on_action(h, UserSpoke(), NOW, TIMING).handoff.user_ms == NOW


@pytest.mark.parametrize(
    ("user_silence_ms", "grain_ms"),
    [(300_000, 3_000), (900_000, 9_000), (60_000, 1_000), (0, 1_000), (86_400_000, 60_000)],
)
def test_an_agents_burst_of_words_is_one_write_but_an_answer_is_always_noted(
    user_silence_ms: int, grain_ms: int
) -> None:
    """Within a hundredth of the user-silence timer (a second to a minute) of the agent's last
    word written down, its next words change nothing (no record write)."""
    timing = replace(TIMING, user_silence_ms=user_silence_ms)
    assert agent_words_grain_ms(timing) == grain_ms
    h = replace(hand(S.WITH_AGENT, **ANN), agent_ms=NOW - grain_ms + 1)
    said = ChatEvent(EventKind.AGENT_MESSAGE, "TEST", C1, NOW, text="more", **ANN)
    assert on_event(h, said, NOW, timing).handoff is h  # within the grain: nothing to write
    answering = replace(h, user_ms=NOW - 100)
    assert on_event(answering, said, NOW, timing).handoff.agent_ms == NOW
    later = replace(h, agent_ms=NOW - grain_ms)
    assert on_event(later, said, NOW, timing).handoff.agent_ms == NOW
    assert on_event(later, said, NOW, Timing()).handoff is later  # no silence timer: no write


def test_a_join_and_the_queue_timeout_at_the_same_instant_join_first() -> None:
    """The join was accepted first: the timeout, behind it in the stream, is stale."""
    queued = hand(S.QUEUED, K.QUEUE_TIMEOUT)
    joined = on_event(queued, _join(NOW), NOW, TIMING)
    late = on_timer(joined.handoff, fired(K.QUEUE_TIMEOUT), NOW, TIMING)
    assert (late.outcome, late.effects) == ("ignored_timer", ())
    assert late.handoff.state is S.WITH_AGENT


def test_a_join_and_the_queue_timeout_at_the_same_instant_timeout_first() -> None:
    """The timeout was claimed first: the user is told and the interaction ends; the join
    behind it finds the handoff over and tells the user nothing."""
    queued = hand(S.QUEUED, K.QUEUE_TIMEOUT)
    timed_out = on_timer(queued, fired(K.QUEUE_TIMEOUT), NOW, TIMING)
    assert timed_out.effects == (NotifyBot(INTENT_QUEUE_TIMEOUT, {}), EndInteraction())
    late = on_event(timed_out.handoff, _join(NOW), NOW, TIMING)
    assert (late.outcome, late.effects, late.handoff.state) == ("ignored_after_end", (), S.ENDED)


def test_timers_survive_the_record_round_trip() -> None:
    h = hand(S.WITH_AGENT, K.USER_SILENCE, K.AGENT_SILENCE, agent_ms=5, user_ms=7)
    fields = h.to_fields()
    assert fields["timers"] == f"agent_silence={NOW};user_silence={NOW}"
    assert Handoff.from_fields(fields) == h
    odd = {**fields, "timers": "agent_silence=x;bogus=3;user_silence=9;"}
    assert Handoff.from_fields(odd).timers == ((K.USER_SILENCE, 9),)


@pytest.mark.parametrize(
    ("start", "step_of", "disarmed"),
    [
        # An agent message moves the user-silence arming (the same member): nothing to forget.
        (WITH_ANN, lambda h: on_event(h, _said(NOW), NOW, TIMING), ()),
        # The same handoff's agent again (a transfer back): the silence armings move.
        (WITH_ANN, lambda h: on_event(h, _join(NOW), NOW, TIMING), ()),
        # Another conversation replaces the live handoff: its armings are all over.
        (
            WITH_ANN,
            lambda h: on_action(h, Escalated(ConversationId("c2"), reopened=False), NOW, TIMING),
            (disarm(K.AGENT_SILENCE), disarm(K.USER_SILENCE)),
        ),
        # The same conversation reopened after the user ended it while queued: the new handoff
        # arms the same kinds, but the old one's armings are members of their own (its since).
        (
            hand(S.ENDED, K.QUEUE_TIMEOUT, K.QUEUE_REMINDER),
            lambda h: on_action(h, Escalated(C1, reopened=True), NOW, TIMING),
            (disarm(K.QUEUE_REMINDER), disarm(K.QUEUE_TIMEOUT)),
        ),
        # The user ends the chat: the record keeps its armings (they fire, ignored), as before.
        (WITH_ANN, lambda h: on_action(h, UserEnded(), NOW, TIMING), ()),
    ],
    ids=[
        "agent message",
        "agent joins again",
        "replaced by another conversation",
        "reopened",
        "user ends",
    ],
)
def test_a_step_disarms_exactly_the_armings_its_record_no_longer_names(
    start: Handoff, step_of: Any, disarmed: tuple[DisarmTimer, ...]
) -> None:
    step = step_of(start)
    assert tuple(e for e in step.effects if isinstance(e, DisarmTimer)) == disarmed
    named = dict(step.handoff.timers)
    same = (step.handoff.conversation_id, step.handoff.since_ms) == (C1, T0)
    for effect in disarmed:
        assert not (same and effect.timer.kind in named)


# --- a property: the store keeps exactly the armings a live handoff's record names ---

EVERY_TIMER = Timing(
    queue_timeout_ms=600_000,
    queue_reminder_ms=120_000,
    agent_silence_ms=300_000,
    user_silence_ms=900_000,
)
Member = tuple[TimerKind, int, ConversationId]
_C2 = ConversationId("c2")
_timed_events = st.builds(
    ChatEvent,
    kind=st.sampled_from(list(EventKind)),
    raw_type=st.just("X"),
    conversation_id=st.sampled_from([C1, C1, C1, _C2]),
    timestamp_ms=st.none(),
    agent_id=st.sampled_from([None, "a1", "b2"]),
    agent_name=st.sampled_from([None, "Ann", "Bob"]),
    text=st.sampled_from([None, "hi"]),
)
_timed_actions = st.one_of(
    st.builds(Escalated, st.sampled_from([C1, _C2]), st.booleans()),
    st.just(UserEnded()),
    st.just(UserSpoke()),
)
_FIRE = "fire"  # the partition's holder fires what is due (in due order)
_timed_inputs = st.lists(
    st.tuples(st.integers(0, 400_000), st.one_of(_timed_events, _timed_actions, st.just(_FIRE))),
    max_size=40,
)


def _stored(timers: dict[Member, int], step: Step) -> None:
    """What the store does with a step's timer effects (bridge/store/timers.py): one member per
    kind and handoff; an arming moves it, a disarming removes it only while at its due time."""
    for effect in step.effects:
        if isinstance(effect, ArmTimer | DisarmTimer):
            t = effect.timer
            member = (t.kind, t.since_ms, t.conversation_id)
            if isinstance(effect, ArmTimer):
                timers[member] = t.due_ms
            elif timers.get(member) == t.due_ms:
                del timers[member]


def _input_step(h: Handoff, item: Any, now: int) -> Step:
    if isinstance(item, ChatEvent):
        return on_event(h, item, now, EVERY_TIMER)
    return on_action(h, item, now, EVERY_TIMER)


@settings(max_examples=400)
@given(_timed_inputs)
def test_the_store_keeps_exactly_the_armings_a_live_record_names(
    inputs: list[tuple[int, Any]],
) -> None:
    h, now, timers = Handoff(), T0, dict[Member, int]()
    for dt, item in inputs:
        now += dt
        if item == _FIRE:
            for member, due in sorted(timers.items(), key=lambda kv: kv[1]):
                if due > now:
                    break
                del timers[member]  # fired: out of the set, into the stream
                step = on_timer(
                    h, TimerFired(member[0], member[2], member[1], due), now, EVERY_TIMER
                )
                _stored(timers, step)
                h = step.handoff
        else:
            step = _input_step(h, item, now)
            _stored(timers, step)
            h = step.handoff
        if h.active and h.conversation_id is not None:
            # The live handoff's members are exactly the armings its record names: none missing
            # (it would wait for ever), none left over (it would fire stale).
            mine = {
                m[0]: due for m, due in timers.items() if m[1:] == (h.since_ms, h.conversation_id)
            }
            assert mine == dict(h.timers), h
