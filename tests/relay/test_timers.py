"""Fired timers through the relay: an entry in the earlier version's form is applied as before,
and a stale arming that fired in the place of the live one (one member per kind and handoff, see
bridge/store/timers.py) arms the live one again, so that it still fires."""

from __future__ import annotations

import json
from typing import cast

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.errors import StoreUnavailable
from bridge.handoff import (
    INTENT_USER_SILENT,
    ArmTimer,
    Escalated,
    Handoff,
    State,
    TimerFired,
    TimerKind,
    Timing,
    on_action,
)
from bridge.ids import ConversationId, EventId, SenderId
from bridge.relay.deliver import named_armings
from bridge.store.base import TIMER_EVENT_PREFIX
from bridge.store.keys import timer_shard
from bridge.store.timers import timer_member

from .conftest import JOINED, Rig, RigFactory

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
    key, member = rig.store.keys.timers(0, timer_shard(C)), timer_member(moved)
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


async def test_timers_armed_by_a_saved_step_whose_ack_failed_are_armed_by_its_retry(
    make_rig: RigFactory,
) -> None:
    """The join's record (naming its silence timers) was saved, then the step that finishes the
    entry, which arms them, failed (Redis gone a moment, or `serve` killed). The retry finds
    the record joined already and has nothing to change: it arms what the record names."""
    timing = Timing(agent_silence_ms=120_000, user_silence_ms=300_000)
    rig = await make_rig(timing=timing, timer_poll_s=NEVER_S)
    await rig.link("ada", "c1")
    ack_event = rig.store.ack_event
    failed: list[str] = []

    async def fails_once(*args: object, **kw: object) -> bool:
        if not failed:
            failed.append("ack")
            raise StoreUnavailable("redis gone after the save")
        return await ack_event(*args, **kw)  # type: ignore[arg-type]

    rig.store.ack_event = fails_once  # type: ignore[method-assign]
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    assert failed
    record = await rig.store.load_handoff(S)
    assert record is not None
    named = Handoff.from_fields(record.fields)
    assert named.state is State.WITH_AGENT
    armed = await rig.store.redis.zrange(
        rig.store.keys.timers(0, timer_shard(C)), 0, -1, withscores=True
    )
    assert sorted(armed) == sorted(
        (timer_member(TimerFired(kind, C, named.since_ms, due)), due) for kind, due in named.timers
    )
    assert len(armed) == 2


EVERY_TIMER = Timing(
    queue_timeout_ms=600_000,
    queue_reminder_ms=60_000,
    agent_silence_ms=120_000,
    user_silence_ms=300_000,
)


async def escalated(rig: Rig) -> None:
    """ada escalated into c1 with every timer on: the record names the queue's two timers, and
    the set holds them, as the escalate action leaves them."""
    now = int(rig.clock() * 1000)
    step = on_action(Handoff(), Escalated(C, reopened=False), now, EVERY_TIMER)
    assert await rig.store.save_handoff(S, step.handoff.to_fields(), 0)
    await rig.store.link(S, C)
    for effect in step.effects:
        if isinstance(effect, ArmTimer):
            await rig.store.arm_timer(0, effect.timer)


async def armed(rig: Rig) -> list[tuple[str, float]]:
    key = rig.store.keys.timers(0, timer_shard(C))
    found = await rig.store.redis.zrange(key, 0, -1, withscores=True)
    return sorted(cast("list[tuple[str, float]]", found))


async def named(rig: Rig) -> list[tuple[str, float]]:
    """The set's members the record names: exactly what the set should hold."""
    record = await rig.store.load_handoff(S)
    assert record is not None
    h = Handoff.from_fields(record.fields)
    return sorted((timer_member(TimerFired(k, C, h.since_ms, due)), due) for k, due in h.timers)


async def test_a_join_saved_whose_ack_the_lease_refused_is_finished_once_by_the_next_holder(
    make_rig: RigFactory,
) -> None:
    """The join's record (the silence timers named, the queue's gone) was saved; then the
    partition's lease passed to another relay before the step that finishes the entry, so its
    ack was refused and the entry stayed. The next holder finds the record joined: it shows
    nothing twice, and the set ends holding exactly the record's armings."""
    rig = await make_rig(timing=EVERY_TIMER, timer_poll_s=NEVER_S)
    await escalated(rig)
    assert len(await armed(rig)) == 2  # the queue's timeout and reminder
    lease = rig.store.keys.partition_lease(0)
    ack_event = rig.store.ack_event
    refused: list[bool] = []

    async def lease_taken_first(*args: object, **kw: object) -> bool:
        if not refused:
            await rig.store.redis.set(lease, "relay-z")  # it lapsed and another relay took it
        acked = await ack_event(*args, **kw)  # type: ignore[arg-type]
        refused.append(not acked)
        return acked

    rig.store.ack_event = lease_taken_first  # type: ignore[method-assign]
    relay = await rig.started()
    await rig.join("c1")
    await relay.wait_consumers_ended(timeout_s=10.0)
    assert refused == [True]
    assert await state(rig) is State.WITH_AGENT  # saved before the refused ack
    assert len(await rig.store.read_events(0, 10)) == 1  # the entry is still there
    assert await rig.store.redis.delete(lease)  # relay-z gave it up (or died)
    await relay.renew_leases()
    await rig.idle()
    assert refused == [True, False]
    assert rig.rasa.timeline(S) == [JOINED]  # once: the record says joined already
    assert await rig.store.read_events(0, 10) == []
    assert await armed(rig) == await named(rig)
    assert sorted(m.split("|")[0] for m, _ in await armed(rig)) == ["a", "u"]


async def test_a_run_leaves_the_timer_set_as_the_record_it_saved_names_it(
    make_rig: RigFactory,
) -> None:
    """Several agent messages in one run, every timer on: the run saves the record once (when
    the agent last spoke: the silences re-arm from it when they fire, not at each word) and
    its ack leaves the set holding exactly what that record names."""
    rig = await make_rig(timing=EVERY_TIMER, timer_poll_s=NEVER_S)
    await escalated(rig)
    await rig.started("relay-a")
    await rig.join("c1")
    await rig.idle()
    assert await armed(rig) == await named(rig)
    await rig.relays[0].stop()
    rig.clock.advance(60.0)  # past the grain: the run's words are written down
    await rig.say("c1", "one", "two", "three")
    relay = await rig.started("relay-b")
    await rig.idle(relay)
    assert rig.rasa.sizes == [1, 3]  # the join, then the three words in one run
    record = await rig.store.load_handoff(S)
    assert record is not None
    assert Handoff.from_fields(record.fields).agent_ms == int(rig.clock() * 1000)
    assert await armed(rig) == await named(rig)


def test_a_later_attempt_arms_again_what_the_record_names_but_the_timer_being_applied() -> None:
    since = 1_700_000_000_000
    h = Handoff(State.WITH_AGENT, C, "Anna", since_ms=since, changed_ms=since)
    h = h.with_timer(TimerKind.AGENT_SILENCE, since + 5).with_timer(
        TimerKind.USER_SILENCE, since + 9
    )
    agent = TimerFired(TimerKind.AGENT_SILENCE, C, since, since + 5)
    user = TimerFired(TimerKind.USER_SILENCE, C, since, since + 9)
    message = ChatEvent(EventKind.AGENT_MESSAGE, "TEST", C, since, text="hi")
    assert named_armings(h, message) == (agent, user)
    assert named_armings(h, user) == (agent,)  # it fired: out of the set, not put back
    assert named_armings(h, TimerFired(TimerKind.USER_SILENCE, C, since, since + 1)) == (
        agent,
        user,
    )
    assert named_armings(Handoff(), message) == ()
