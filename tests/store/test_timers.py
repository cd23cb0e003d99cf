"""Timers in the store: armed per partition, fired by the lease holder only, once, into the
partition stream behind the events accepted before them."""

from __future__ import annotations

from bridge.ids import EventId
from bridge.store import RedisStore

from .conftest import OTHER, OWNER


async def test_a_due_timer_fires_once_into_the_stream_after_earlier_events(
    leased: RedisStore,
) -> None:
    await leased.enqueue_event(2, EventId("join"), '{"kind":"agent_joined"}', 60)
    await leased.arm_timer(2, "timer-a", 1_000)
    await leased.arm_timer(2, "timer-b", 2_000)
    assert await leased.fire_timers(2, 999, OWNER) == 0  # not due yet
    assert await leased.fire_timers(2, 1_000, OWNER) == 1
    assert await leased.fire_timers(2, 1_500, OWNER) == 0  # fired already: never twice
    entries = await leased.read_events(2, 10)
    assert [(e.event_id, e.payload) for e in entries] == [
        (EventId("join"), '{"kind":"agent_joined"}'),
        (EventId("timer:timer-a"), "timer-a"),
    ]
    assert await leased.fire_timers(2, 5_000, OWNER) == 1
    assert [e.payload for e in await leased.read_events(2, 10)][-1] == "timer-b"


async def test_only_the_lease_holder_fires(leased: RedisStore) -> None:
    await leased.arm_timer(1, "timer-a", 1_000)
    assert await leased.fire_timers(1, 5_000, OTHER) == 0
    assert await leased.read_events(1, 10) == []
    assert await leased.fire_timers(1, 5_000, OWNER) == 1


async def test_arming_the_same_timer_again_moves_it(leased: RedisStore) -> None:
    await leased.arm_timer(0, "timer-a", 1_000)
    await leased.arm_timer(0, "timer-a", 9_000)
    assert await leased.fire_timers(0, 5_000, OWNER) == 0
    assert await leased.fire_timers(0, 9_000, OWNER) == 1


async def test_firing_is_bounded_per_call(leased: RedisStore) -> None:
    for i in range(5):
        await leased.arm_timer(3, f"t{i}", i)
    assert await leased.fire_timers(3, 100, OWNER, limit=3) == 3
    assert await leased.fire_timers(3, 100, OWNER, limit=3) == 2
    assert [e.payload for e in await leased.read_events(3, 10)] == [f"t{i}" for i in range(5)]
