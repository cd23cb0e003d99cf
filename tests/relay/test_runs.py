"""Runs (bridge/relay/runs.py) as tables: which entries of a read batch go together, and how
many of a run's messages the state machine lets through as words for the user only."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bridge.eightbyeight.events import Attachment, ChatEvent, EventKind
from bridge.handoff import (
    ArmTimer,
    EndInteraction,
    Handoff,
    NotifyBot,
    SayToUser,
    State,
    Step,
    TimerFired,
    TimerKind,
    Timing,
)
from bridge.ids import ConversationId
from bridge.relay.runs import Item, joins, plan_units, say_only, say_only_prefix

C, D, E = ConversationId("c"), ConversationId("d"), ConversationId("e")


def items(spec: str) -> list[Item]:
    """`cm` an agent message of c, `cx` anything else of c, `?` an entry that cannot be read."""
    return [
        Item(None, False) if s == "?" else Item(ConversationId(s[0]), s[1] == "m")
        for s in spec.split()
    ]


@pytest.mark.parametrize(
    ("batch", "ready", "units"),
    [
        # messages of one conversation, one after another: one run
        ("cm cm cm", {C}, [(0, 1, 2)]),
        # a single message is no run
        ("cm", {C}, [(0,)]),
        ("cm dm", {C, D}, [(0,), (1,)]),
        # runs skip other conversations' entries, which keep their own order
        ("cm dm cm dx dm", {C, D}, [(0, 2), (1,), (3,), (4,)]),
        ("cm dm cm dm", {C, D}, [(0, 2), (1, 3)]),
        # a state change cuts the run; everything of c after it goes alone
        ("cm cm cx cm cm", {C}, [(0, 1), (2,), (3,), (4,)]),
        ("cx cm cm", {C}, [(0,), (1,), (2,)]),
        ("cm cx cm", {C}, [(0,), (1,), (2,)]),
        # not ready (no sender yet, or held): one at a time, to be held in order
        ("cm cm cm", set(), [(0,), (1,), (2,)]),
        ("cm cm dm dm", {D}, [(0,), (1,), (2, 3)]),
        # an entry that cannot be read belongs to no conversation: it goes alone
        ("cm ? cm", {C}, [(0, 2), (1,)]),
        ("", {C}, []),
    ],
)
def test_a_read_batch_is_worked_as_runs_and_single_entries(
    batch: str, ready: set[ConversationId], units: list[tuple[int, ...]]
) -> None:
    assert plan_units(items(batch), ready) == units


@pytest.mark.parametrize(
    "batch", ["cm dm cm dx dm em cx cm", "cm cm cm dm dx dm", "dx cm dm cm ? em cm"]
)
def test_each_conversation_keeps_its_order_and_every_entry_is_worked_once(batch: str) -> None:
    given = items(batch)
    order = [i for unit in plan_units(given, {C, D, E}) for i in unit]
    assert sorted(order) == list(range(len(given)))
    for c in (C, D, E):
        mine = [i for i in order if given[i].conversation == c]
        assert mine == sorted(mine)


@pytest.mark.parametrize(
    ("queued", "behind", "most", "joined"),
    [
        # agent messages of one conversation, one unit behind the other: one run
        ("cm", "cm", 64, True),
        ("cm cm", "cm", 64, True),
        ("cm", "cm cm", 3, True),
        # no more than `most`
        ("cm cm", "cm cm", 3, False),
        # anything else of the conversation, before or behind: each as planned
        ("cx", "cm", 64, False),
        ("cm", "cx", 64, False),
        # another conversation's (of the same sender: one lane)
        ("cm", "dm", 64, False),
        # an entry that cannot be read belongs to no conversation
        ("?", "?", 64, False),
        ("cm", "?", 64, False),
    ],
)
def test_a_unit_waiting_in_a_lane_joins_the_next_one_as_a_run(
    queued: str, behind: str, most: int, joined: bool
) -> None:
    assert joins(items(queued), items(behind), most) is joined


NOW = 1_700_000_000_000
ANNA = Handoff(
    state=State.WITH_AGENT, conversation_id=C, agent_name="Anna", agent_id="a1", since_ms=NOW - 60_000
)  # fmt: skip
SILENCE = Timing(agent_silence_ms=60_000, user_silence_ms=60_000)


def msg(text: str | None = "hi", agent: str = "a1", **kw: Any) -> ChatEvent:
    return ChatEvent(EventKind.AGENT_MESSAGE, "TEST", conversation_id=C, text=text,
                     agent_id=agent, **kw)  # fmt: skip


def other(kind: EventKind) -> ChatEvent:
    return ChatEvent(kind, "TEST", conversation_id=C, agent_id="a1")


@pytest.mark.parametrize(
    ("start", "events", "timing", "taken"),
    [
        # with the agent: every message is only words for the user
        (ANNA, [msg("a"), msg("b"), msg("c")], Timing(), 3),
        # silence timers on: the record notes when the agent spoke, still words only
        (ANNA, [msg("a"), msg("b")], SILENCE, 2),
        # attachments are bot messages too
        (
            ANNA,
            [msg(None, attachments=(Attachment("image", "https://x/y.png"),)), msg("b")],
            Timing(),
            2,
        ),  # fmt: skip
        # a blank message is ignored (no words): the run stops before it
        (ANNA, [msg("a"), msg("  "), msg("c")], Timing(), 1),
        # a supervisor's words are relayed like the agent's
        (ANNA, [msg("a"), msg("b", agent="sup")], Timing(), 2),
        # waiting for an agent: the first message implies the join (an intent): nothing taken
        (Handoff(State.QUEUED, C, since_ms=NOW - 1000), [msg("a"), msg("b")], Timing(), 0),
        # in transfer: the old agent's last words are relayed, the next agent's imply a join
        (replace(ANNA, state=State.TRANSFERRING), [msg("a"), msg("b")], Timing(), 2),  # fmt: skip
        (
            replace(ANNA, state=State.TRANSFERRING),
            [msg("a"), msg("b", agent="a2")],
            Timing(),
            1,
        ),  # fmt: skip
        # no live handoff, or another conversation's messages: ignored, nothing taken
        (Handoff(), [msg("a"), msg("b")], Timing(), 0),
        (Handoff(State.ENDED, C, agent_id="a1"), [msg("a")], Timing(), 0),
        (Handoff(State.WITH_AGENT, D, agent_id="a1"), [msg("a"), msg("b")], Timing(), 0),
        # a message older than the handoff (a previous interaction's): ignored
        (ANNA, [msg("a", timestamp_ms=NOW - 3_600_000), msg("b")], Timing(), 0),
        (ANNA, [], Timing(), 0),
    ],
)
def test_the_state_machine_decides_how_much_of_a_run_is_words_only(
    start: Handoff, events: list[ChatEvent], timing: Timing, taken: int
) -> None:
    steps = say_only_prefix(start, events, NOW, timing)
    assert len(steps) == taken
    assert all(s.outcome == "relayed" for s in steps)
    before = start
    for step in steps:  # each applied to the record the one before left
        assert step.handoff.state is before.state
        before = step.handoff


def test_the_last_step_holds_the_record_to_save() -> None:
    steps = say_only_prefix(replace(ANNA, agent_name=None),
                            [msg("a", agent_name="Anna"), msg("b")], NOW, SILENCE)  # fmt: skip
    assert steps[-1].handoff.agent_name == "Anna"  # learnt from the first message
    assert steps[-1].handoff.agent_ms == NOW


SAY = SayToUser("hi", "Anna")
TIMER = ArmTimer(TimerFired(TimerKind.USER_SILENCE, C, NOW, NOW + 60_000))


@pytest.mark.parametrize(
    ("effects", "state", "only"),
    [
        ((SAY,), State.WITH_AGENT, True),
        ((SAY, SAY), State.WITH_AGENT, True),
        ((SAY, TIMER), State.WITH_AGENT, True),  # a timer is stored after the push, as alone
        ((), State.WITH_AGENT, False),  # nothing to say
        ((TIMER,), State.WITH_AGENT, False),
        ((NotifyBot("EXTERNAL_agent_joined", {}), SAY), State.WITH_AGENT, False),  # an intent
        ((SAY, EndInteraction()), State.WITH_AGENT, False),  # an 8x8 call
        ((SAY,), State.ENDED, False),  # a state change
    ],
)
def test_words_only_means_no_intent_no_end_and_the_same_state(
    effects: tuple[Any, ...], state: State, only: bool
) -> None:
    before = ANNA
    after = replace(ANNA, state=state)
    assert say_only(before, Step(after, effects, "relayed")) is only
