"""The handoff's timers over the real parts: the service arms them in Redis, the relay's lease
holder fires them into the partition stream, the state machine decides, the user is told
through Rasa (a stand-in) and 8x8 (the simulator) sees the interaction end. The bridge's clock
is injected and moved by the test; nothing waits out a real timeout."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bridge.eightbyeight.client import Customer
from bridge.errors import StoreUnavailable
from bridge.handoff import State, TimerKind
from bridge.ids import ConversationId, SenderId
from bridge.relay import Relay
from bridge.store.base import partition_of
from bridge.store.keys import timer_shard
from tests.core.conftest import BridgeFactory, Harness
from tests.support.waiting import eventually

QUEUED = "#EXTERNAL_handoff_queued"
JOINED = "#EXTERNAL_agent_joined"
TIMED_OUT = "#EXTERNAL_handoff_queue_timeout"
REMINDED = "#EXTERNAL_handoff_queue_reminder"
AGENT_SILENT = "#EXTERNAL_handoff_agent_silent"
USER_SILENT = "#EXTERNAL_handoff_user_silent"


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


async def escalate(h: Harness, sender: str) -> ConversationId:
    result = await h.runtime.service.escalate(SenderId(sender), Customer(name="Ada"), [], "")
    assert result.conversation_id is not None
    await eventually(lambda: QUEUED in h.rasa.timeline(sender), 10, "queued")
    return result.conversation_id


async def settled(h: Harness, cid: ConversationId) -> None:
    """Every timer that was due has fired and every event of the partition is delivered."""
    partition = partition_of(cid, h.store.partitions)
    redis = h.runtime.store.redis  # type: ignore[attr-defined]
    keys = h.runtime.store.keys  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10

    async def due() -> int:
        now = int(h.runtime.relay._clock() * 1000)
        return sum([await redis.zcount(key, "-inf", now) for key in keys.timer_sets(partition)])

    while await redis.xlen(keys.stream(partition)) or await due():
        assert time.monotonic() < deadline, "the partition did not settle"
        await h.sim.idle(timeout=5)
        await asyncio.sleep(0.02)


# Every timer on: the queue's two armed by the escalation, the silences by the agent's join.
EVERY_TIMER = {
    "handoff_queue_timeout_s": 600,
    "handoff_queue_reminder_s": 60,
    "handoff_agent_silence_s": 120,
    "handoff_user_silence_s": 300,
}


async def joined(h: Harness, sender: str) -> ConversationId:
    """Escalated, and an agent's join delivered."""
    cid = await escalate(h, sender)
    await h.sim.desk.accept(cid, agent_name="Anna")
    await eventually(lambda: JOINED in h.rasa.timeline(sender), 10, "joined")
    return cid


async def members(h: Harness, cid: ConversationId) -> list[str]:
    """The members of `cid`'s handoffs in its partition's timer set."""
    redis = h.runtime.store.redis  # type: ignore[attr-defined]
    keys = h.runtime.store.keys  # type: ignore[attr-defined]
    key = keys.timers(partition_of(cid, h.store.partitions), timer_shard(cid))
    return sorted(m for m in await redis.zrange(key, 0, -1) if m.endswith(f"|{cid}"))


async def test_no_agent_within_the_queue_timeout_tells_the_user_once_and_ends_the_interaction(
    make_bridge: BridgeFactory,
) -> None:
    clock = Clock(time.time())
    h = await make_bridge(clock=clock, handoff_queue_timeout_s=600, handoff_queue_reminder_s=0)
    cid = await escalate(h, "quinn")
    clock.now += 599
    await settled(h, cid)
    assert TIMED_OUT not in h.rasa.timeline("quinn")  # not due yet
    clock.now += 1
    await eventually(lambda: TIMED_OUT in h.rasa.timeline("quinn"), 10, "the queue timeout")
    await eventually(lambda: h.sim.conversation(cid).interaction is None, 10, "the leave")
    await settled(h, cid)  # the leave's own 8x8 events, delivered after it, change nothing
    assert h.rasa.timeline("quinn") == [QUEUED, TIMED_OUT]
    assert (await h.runtime.service.handoff(SenderId("quinn"))).state is State.ENDED


async def test_a_reminder_per_interval_while_waiting_then_none_once_an_agent_joined(
    make_bridge: BridgeFactory,
) -> None:
    clock = Clock(time.time())
    h = await make_bridge(
        clock=clock,
        handoff_queue_timeout_s=0,
        handoff_queue_reminder_s=60,
        handoff_user_silence_s=0,
    )
    cid = await escalate(h, "rita")
    clock.now += 60
    await eventually(lambda: REMINDED in h.rasa.timeline("rita"), 10, "the first reminder")
    clock.now += 150  # late: still one reminder, the next armed an interval after it
    await eventually(lambda: h.rasa.timeline("rita").count(REMINDED) == 2, 10, "the second")
    await settled(h, cid)
    assert h.rasa.timeline("rita").count(REMINDED) == 2
    await h.sim.desk.accept(cid, agent_name="Anna")
    await eventually(lambda: JOINED in h.rasa.timeline("rita"), 10, "joined")
    clock.now += 900
    await settled(h, cid)
    assert h.rasa.timeline("rita") == [QUEUED, REMINDED, REMINDED, JOINED]


async def test_silences_with_an_agent_still_connected_then_closed_on_both_sides(
    make_bridge: BridgeFactory,
) -> None:
    clock = Clock(time.time())
    h = await make_bridge(
        clock=clock,
        handoff_queue_reminder_s=0,
        handoff_agent_silence_s=120,
        handoff_user_silence_s=300,
    )
    cid = await escalate(h, "sam")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await eventually(lambda: JOINED in h.rasa.timeline("sam"), 10, "joined")
    assert (await h.runtime.service.forward(SenderId("sam"), "hello?")).outcome.value == "sent"
    clock.now += 120
    await eventually(lambda: AGENT_SILENT in h.rasa.timeline("sam"), 10, "still connected")
    await h.sim.desk.say(cid, "Sorry, here now. Anything else?")
    await eventually(lambda: "Sorry, here now. Anything else?" in h.rasa.texts("sam"), 10, "text")
    clock.now += 299
    await settled(h, cid)
    assert USER_SILENT not in h.rasa.timeline("sam")
    clock.now += 1
    await eventually(lambda: USER_SILENT in h.rasa.timeline("sam"), 10, "closed")
    await eventually(lambda: h.sim.conversation(cid).interaction is None, 10, "the leave")
    notes = [m.text for m in h.sim.conversation(cid).messages if m.author_type == "bot"]
    assert notes and "closed" in notes[-1]  # the agent was told why
    await settled(h, cid)
    assert h.rasa.timeline("sam").count(USER_SILENT) == 1


async def _race(h: Harness, clock: Clock, sender: str, *, join_first: bool) -> ConversationId:
    """The agent's join and the queue timeout, both in the partition stream before the relay
    reads either, in the given order: the relay is stopped, the join accepted by the webhook,
    the timer fired by a stand-in lease holder exactly at its due time, then a new relay."""
    cid = await escalate(h, sender)
    due = (await h.runtime.service.handoff(SenderId(sender))).due(TimerKind.QUEUE_TIMEOUT)
    assert due is not None
    partition = partition_of(cid, h.store.partitions)
    await settled(h, cid)
    await h.runtime.relay.stop()
    stream_length = h.runtime.store.redis.xlen  # type: ignore[attr-defined]
    stream = h.runtime.store.keys.stream(partition)  # type: ignore[attr-defined]

    async def fire() -> None:
        clock.now = due / 1000
        assert await h.store.acquire_partition(partition, "test-holder", 10_000)
        assert await h.store.fire_timers(partition, due, "test-holder") == 1
        await h.store.release_partition(partition, "test-holder")

    async def join() -> None:
        before = await stream_length(stream)
        await h.sim.desk.accept(cid, agent_name="Anna")
        deadline = time.monotonic() + 10
        while await stream_length(stream) == before:  # the webhook accepted the join
            assert time.monotonic() < deadline, "the join never reached the stream"
            await h.sim.idle(timeout=5)

    for step in (join, fire) if join_first else (fire, join):
        await step()
    config = h.runtime.relay._config
    relay = Relay(h.store, h.runtime.relay._deliverer, h.runtime.metrics, config, clock=clock)
    relay.start()
    try:
        await settled(h, cid)
    finally:
        await relay.stop()
    return cid


async def test_an_agent_joining_at_the_instant_of_the_queue_timeout_wins_if_accepted_first(
    make_bridge: BridgeFactory,
) -> None:
    clock = Clock(time.time())
    h = await make_bridge(clock=clock, handoff_queue_timeout_s=600, handoff_queue_reminder_s=0)
    cid = await _race(h, clock, "tia", join_first=True)
    assert h.rasa.timeline("tia") == [QUEUED, JOINED]
    assert (await h.runtime.service.handoff(SenderId("tia"))).state is State.WITH_AGENT
    assert h.sim.conversation(cid).interaction is not None  # the chat goes on


async def test_an_agent_joining_at_the_instant_of_the_queue_timeout_loses_safely_if_second(
    make_bridge: BridgeFactory,
) -> None:
    clock = Clock(time.time())
    h = await make_bridge(clock=clock, handoff_queue_timeout_s=600, handoff_queue_reminder_s=0)
    cid = await _race(h, clock, "ugo", join_first=False)
    # The user hears of the timeout only, never of a join; the agent is left alone in 8x8.
    assert h.rasa.timeline("ugo") == [QUEUED, TIMED_OUT]
    assert (await h.runtime.service.handoff(SenderId("ugo"))).state is State.ENDED
    await eventually(lambda: not h.sim.conversation(cid).user_present or
                     h.sim.conversation(cid).interaction is None, 10, "the user left 8x8")  # fmt: skip


async def test_a_timer_fires_once_from_whichever_process_holds_it_after_a_restart(
    make_bridge: BridgeFactory,
) -> None:
    """Two serve processes on one Redis; the one that armed the timer stops before it is due
    (a restart): the other fires it, once."""
    clock = Clock(time.time())
    timers = {"handoff_queue_timeout_s": 600, "handoff_queue_reminder_s": 0}
    first = await make_bridge(clock=clock, **timers)
    second = await make_bridge(clock=clock, **timers)
    cid = await escalate(first, "vera")
    await first.runtime.relay.stop()
    await eventually(
        lambda: len(second.runtime.relay.owned_partitions) == second.store.partitions,
        15,
        "the second process holding every partition",
    )
    clock.now += 600
    await eventually(lambda: TIMED_OUT in second.rasa.timeline("vera"), 10, "the timeout")
    await settled(second, cid)
    assert second.rasa.timeline("vera") == [QUEUED, TIMED_OUT]


async def test_an_agents_join_leaves_only_the_live_timers_in_the_set(
    make_bridge: BridgeFactory,
) -> None:
    """The queue's timers, armed by the escalation, are over once an agent joins: their members
    leave the partition's timer set with the join's delivery (they would fire, stale, up to
    the queue timeout later); the silence timers the join armed are the handoff's only ones."""
    h = await make_bridge(clock=Clock(time.time()), **EVERY_TIMER)
    cid = await escalate(h, "sam")
    assert [m.split("|")[0] for m in await members(h, cid)] == ["q", "r"]
    await h.sim.desk.accept(cid, agent_name="Anna")
    await eventually(lambda: JOINED in h.rasa.timeline("sam"), 10, "joined")
    await h.settled()
    live = await h.runtime.service.handoff(SenderId("sam"))
    assert sorted(k for k, _ in live.timers) == [TimerKind.AGENT_SILENCE, TimerKind.USER_SILENCE]
    assert await members(h, cid) == [f"{code}|{live.since_ms}|{cid}" for code in ("a", "u")]


async def test_a_reopened_handoff_keeps_only_its_own_timers_in_the_set(
    make_bridge: BridgeFactory,
) -> None:
    """The agent left (the ended record keeps its silence armings); the user escalates again and
    the same conversation reopens as a new handoff: the escalate action disarms the old
    handoff's armings after saving the new record, which arms the queue's timers."""
    clock = Clock(time.time())
    h = await make_bridge(clock=clock, **EVERY_TIMER)
    cid = await joined(h, "tess")
    await h.sim.desk.leave(cid)
    await h.settled()
    ended = await h.runtime.service.handoff(SenderId("tess"))
    assert ended.state is State.ENDED and ended.timers  # its silence armings, still named
    clock.now += 1
    again = await h.runtime.service.escalate(SenderId("tess"), Customer(name="Ada"), [], "")
    assert again.conversation_id == cid
    await h.settled()
    live = await h.runtime.service.handoff(SenderId("tess"))
    assert live.since_ms > ended.since_ms
    assert await members(h, cid) == [f"{code}|{live.since_ms}|{cid}" for code in ("q", "r")]


async def test_an_escalation_whose_disarming_fails_is_made_all_the_same(
    make_bridge: BridgeFactory,
) -> None:
    """Forgetting the replaced handoff's armings is a cleanup (they would fire stale, ignored):
    Redis failing it must not fail the escalation whose record is saved."""
    h = await make_bridge(**EVERY_TIMER)
    cid = await joined(h, "uma")
    await h.sim.desk.leave(cid)
    await h.settled()
    tried: list[object] = []

    async def down(*args: object) -> None:
        tried.append(args)
        raise StoreUnavailable("redis down for this call")

    h.store.disarm_timer = down  # type: ignore[method-assign]
    again = await h.runtime.service.escalate(SenderId("uma"), Customer(name="Ada"), [], "")
    assert again.conversation_id == cid and tried
    assert await h.store.sender_of(cid) == SenderId("uma")
