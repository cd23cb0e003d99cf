"""Fired timers through the relay: an entry in the earlier version's form is applied as before,
and a stale arming that fired in the place of the live one (one member per kind and handoff, see
bridge/store/timers.py) arms the live one again, so that it still fires."""

from __future__ import annotations

import json

from bridge.handoff import INTENT_USER_SILENT, Handoff, State, TimerFired, TimerKind, Timing
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store.base import TIMER_EVENT_PREFIX
from bridge.store.timers import timer_member

from .conftest import Rig, RigFactory

S, C = SenderId("ada"), ConversationId("c1")
TIMING = Timing(user_silence_ms=300_000)
SILENT = f"#{INTENT_USER_SILENT}"
# Only the tests fire timers (the relay looks once, when it starts): each step is awaited.
NEVER_S = 3600.0


async def with_agent(rig: Rig, live_due: int) -> int:
    """ada with Anna since an hour ago, Anna's word unanswered since: user silence is live at
    `live_due` (and would close the chat when it fires). Returns the handoff's `since_ms`."""
    since = int(rig.clock() * 1000) - 3_600_000
    h = Handoff(State.WITH_AGENT, C, "Anna", since_ms=since, changed_ms=since, agent_ms=since)
    assert await rig.store.save_handoff(
        S, h.with_timer(TimerKind.USER_SILENCE, live_due).to_fields(), 0
    )
    await rig.store.link(S, C)
    return since


async def state(rig: Rig) -> State:
    record = await rig.store.load_handoff(S)
    assert record is not None
    return Handoff.from_fields(record.fields).state


async def fire(rig: Rig) -> None:
    """Fire what is due now, as the partition's holder does, and wait until it is applied."""
    assert await rig.store.fire_timers(0, int(rig.clock() * 1000), "relay-a") == 1
    rig.kick(0)
    await rig.idle()


async def test_a_timer_entry_of_the_earlier_version_is_applied(make_rig: RigFactory) -> None:
    rig = await make_rig(timing=TIMING, timer_poll_s=NEVER_S)
    due = int(rig.clock() * 1000) - 1_000
    since = await with_agent(rig, due)
    payload = json.dumps(
        {"timer": "user_silence", "conversation_id": C, "since_ms": since, "due_ms": due},
        separators=(",", ":"),
    )
    await rig.store.enqueue_event(0, EventId(TIMER_EVENT_PREFIX + payload), payload, 3600)
    await rig.started()
    rig.kick(0)
    await rig.idle()
    assert rig.rasa.timeline(S) == [SILENT]
    assert await state(rig) is State.ENDED


async def test_a_stale_arming_fired_in_the_live_ones_place_arms_the_live_one_again(
    make_rig: RigFactory,
) -> None:
    """The live arming's member was moved to a later due by a re-arming whose record write never
    happened (the write failed, or lost a race): the record still names the first one."""
    rig = await make_rig(timing=TIMING, timer_poll_s=NEVER_S)
    live = int(rig.clock() * 1000) - 1_000
    since = await with_agent(rig, live)
    moved = TimerFired(TimerKind.USER_SILENCE, C, since, live + 60_000)
    await rig.store.arm_timer(0, moved)
    relay = await rig.started()
    await rig.idle()
    rig.clock.advance(61.0)
    await relay.renew_leases()  # the supervisor's part, with the clock moved on
    await fire(rig)  # the moved arming: stale, so ignored...
    assert rig.rasa.timeline(S) == []
    key, member = rig.store.keys.timers(0), timer_member(moved)
    assert await rig.store.redis.zscore(key, member) == live  # ...and the live one armed again
    await fire(rig)
    assert rig.rasa.timeline(S) == [SILENT]
    assert await state(rig) is State.ENDED


async def test_a_timer_that_fires_while_an_entry_is_handed_is_read_in_the_same_round(
    make_rig: RigFactory,
) -> None:
    """The consumer looks for due timers at every round; one that fires joins the stream after
    the entry the door just handed, and is read with it, not left for the next poll (far longer
    than the test here) or the next kick."""
    rig = await make_rig(timing=TIMING, timer_poll_s=0.0, poll_s=NEVER_S)
    now = int(rig.clock() * 1000)
    since = await with_agent(rig, now + 3_600_000)
    await rig.started()
    await rig.idle()
    stale = TimerFired(TimerKind.USER_SILENCE, C, since, now - 1_000)  # an arming left behind
    await rig.store.arm_timer(0, stale)
    await rig.say("c1", "still there?")  # handed; the timer fires at the round it wakes
    await rig.idle()
    assert rig.rasa.timeline(S) == ["still there?"]
    assert await rig.store.read_events(0, 10) == []
