"""The webhook door (claim + append), the relay's partition lease, reads, acks and attempts."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bridge.ids import EventId, SenderId
from bridge.store import RedisStore, StreamEntry
from bridge.store.base import next_stream_id

from .conftest import LEASE_MS, OTHER, OWNER, now_ms

TTL_S = 3600


async def enqueue(store: RedisStore, *ids: str, partition: int = 0) -> list[StreamEntry]:
    for event_id in ids:
        assert await store.enqueue_event(partition, EventId(event_id), f"payload-{event_id}", TTL_S)
    return await store.read_events(partition, 100)


async def test_enqueue_then_read(store: RedisStore) -> None:
    before = now_ms()
    [entry] = await enqueue(store, "e1")
    assert entry.event_id == "e1"
    assert entry.payload == "payload-e1"
    assert before - 1000 <= entry.accepted_ms <= now_ms() + 1000


async def test_enqueue_dedupes_by_event_id(store: RedisStore) -> None:
    assert await store.enqueue_event(1, EventId("e1"), "first", TTL_S)
    assert not await store.enqueue_event(1, EventId("e1"), "second", TTL_S)
    entries = await store.read_events(1, 10)
    assert [(e.event_id, e.payload) for e in entries] == [("e1", "first")]
    ttl = await store.redis.ttl(store.keys.enqueued(1, EventId("e1")))
    assert 0 < ttl <= TTL_S


async def test_an_enqueue_returns_the_entry_as_read_and_the_last_entry_before_it(
    store: RedisStore,
) -> None:
    first = await store.enqueue_event(1, EventId("e1"), "one", TTL_S)
    claimed = await store.claim_event(EventId("e2"), "0" * 64, settled=False)
    second = await store.enqueue_event(1, EventId("e2"), "two", TTL_S, claimed_ms=claimed.at_ms)
    assert first is not None and second is not None
    assert await store.read_events(1, 10) == [first.entry, second.entry]
    assert (first.after, second.after) == ("", first.entry.entry_id)
    assert second.entry.claimed and not first.entry.claimed
    await store.acquire_partition(1, "me", 60_000)
    await store.ack_event(1, first.entry.entry_id, "me")
    await store.ack_event(1, second.entry.entry_id, "me")
    third = await store.enqueue_event(1, EventId("e3"), "three", TTL_S)
    assert third is not None and third.after == ""  # what was before it has left the stream


async def test_claim_expiry_allows_the_id_again(store: RedisStore) -> None:
    assert await store.enqueue_event(0, EventId("e1"), "p", 1)
    await store.redis.delete(store.keys.enqueued(0, EventId("e1")))  # as if the TTL had passed
    assert await store.enqueue_event(0, EventId("e1"), "p", 1)
    assert len(await store.read_events(0, 10)) == 2


async def test_concurrent_enqueues_of_one_id_accept_one(store: RedisStore) -> None:
    results = await asyncio.gather(
        *(store.enqueue_event(2, EventId("same"), f"p{i}", TTL_S) for i in range(20))
    )
    assert sum(r is not None for r in results) == 1
    assert len(await store.read_events(2, 100)) == 1


async def test_read_returns_oldest_first_up_to_count(store: RedisStore) -> None:
    entries = await enqueue(store, "a", "b", "c", "d")
    assert [e.event_id for e in entries] == ["a", "b", "c", "d"]
    assert [e.event_id for e in await store.read_events(0, 2)] == ["a", "b"]
    ids = [e.entry_id for e in entries]
    assert ids == sorted(ids, key=lambda i: tuple(int(x) for x in i.split("-")))


async def test_a_read_after_an_entry_returns_the_oldest_newer_ones_up_to_count(
    leased: RedisStore,
) -> None:
    a, b, c, d = await enqueue(leased, "a", "b", "c", "d")
    assert await leased.read_events(0, 10, after=a.entry_id) == [b, c, d]
    assert await leased.read_events(0, 2, after=a.entry_id) == [b, c]
    assert await leased.read_events(0, 10, after=d.entry_id) == []
    assert await leased.ack_event(0, b.entry_id, OWNER)
    # The entry read after need not be there any more; a deleted one is skipped.
    assert await leased.read_events(0, 10, after=b.entry_id) == [c, d]
    assert await leased.read_events(0, 10, after=a.entry_id) == [c, d]
    assert await leased.read_events(0, 10) == [a, c, d]  # without `after`: from the start


@pytest.mark.parametrize(
    ("entry_id", "after"),
    [
        ("5-0", "5-1"),
        ("5-9", "5-10"),
        ("1700000000000-41", "1700000000000-42"),
        ("5", "5-1"),  # an id without its sequence part means "<ms>-0"
        (f"5-{2**64 - 1}", "6-0"),  # the last sequence number of a millisecond
    ],
)
def test_the_id_a_read_after_an_entry_starts_from(entry_id: str, after: str) -> None:
    assert next_stream_id(entry_id) == after


async def test_partitions_are_separate_streams(store: RedisStore) -> None:
    await enqueue(store, "x", partition=0)
    await enqueue(store, "y", partition=3)
    assert [e.event_id for e in await store.read_events(0, 10)] == ["x"]
    assert [e.event_id for e in await store.read_events(3, 10)] == ["y"]
    assert await store.read_events(1, 10) == []


async def test_partition_out_of_range_is_refused(store: RedisStore) -> None:
    with pytest.raises(ValueError):
        await store.enqueue_event(store.partitions, EventId("e"), "p", TTL_S)
    with pytest.raises(ValueError):
        await store.read_events(-1, 1)


async def test_partition_lease_acquire_renew_and_refuse(store: RedisStore) -> None:
    assert await store.acquire_partition(0, OWNER, 1_000)
    assert not await store.acquire_partition(0, OTHER, 1_000)
    assert await store.acquire_partition(0, OWNER, 60_000)  # renewal extends
    assert await store.redis.pttl(store.keys.partition_lease(0)) > 30_000
    assert await store.acquire_partition(1, OTHER, 1_000)  # leases are per partition


async def test_partition_lease_expires_and_is_taken_over(store: RedisStore) -> None:
    assert await store.acquire_partition(0, OWNER, 60)
    [entry] = await enqueue(store, "e1")
    await asyncio.sleep(0.15)
    assert await store.acquire_partition(0, OTHER, LEASE_MS)
    assert not await store.acquire_partition(0, OWNER, LEASE_MS)  # no renewal after lapse
    assert not await store.ack_event(0, entry.entry_id, OWNER)  # fenced out
    assert await store.read_events(0, 10) == [entry]
    assert await store.ack_event(0, entry.entry_id, OTHER)


async def test_partition_release_only_by_owner(store: RedisStore) -> None:
    assert await store.acquire_partition(0, OWNER, LEASE_MS)
    await store.release_partition(0, OTHER)
    assert not await store.acquire_partition(0, OTHER, LEASE_MS)
    await store.release_partition(0, OWNER)
    assert await store.acquire_partition(0, OTHER, LEASE_MS)


async def test_ack_removes_the_entry(leased: RedisStore) -> None:
    first, second = await enqueue(leased, "a", "b")
    assert await leased.ack_event(0, first.entry_id, OWNER)
    assert await leased.read_events(0, 10) == [second]


async def test_ack_by_non_owner_is_refused_and_entry_stays(leased: RedisStore) -> None:
    [entry] = await enqueue(leased, "a")
    assert not await leased.ack_event(0, entry.entry_id, OTHER)
    assert await leased.read_events(0, 10) == [entry]


async def test_ack_without_any_lease_is_refused(store: RedisStore) -> None:
    [entry] = await enqueue(store, "a")
    assert not await store.ack_event(0, entry.entry_id, OWNER)
    assert await store.read_events(0, 10) == [entry]


async def test_attempts_count_and_reset_on_ack(leased: RedisStore) -> None:
    [entry] = await enqueue(leased, "a")
    assert [await leased.note_attempt(0, entry.entry_id) for _ in range(3)] == [1, 2, 3]
    assert await leased.ack_event(0, entry.entry_id, OWNER)
    assert not await leased.redis.hexists(leased.keys.attempts(0), entry.entry_id)
    assert await leased.note_attempt(0, entry.entry_id) == 1


async def test_attempts_are_per_entry(leased: RedisStore) -> None:
    a, b = await enqueue(leased, "a", "b")
    await leased.note_attempt(0, a.entry_id)
    await leased.note_attempt(0, a.entry_id)
    assert await leased.note_attempt(0, b.entry_id) == 1


async def test_relay_heartbeat_counts_live_relays_and_forgets_lapsed_ones(
    store: RedisStore,
) -> None:
    assert await store.relay_heartbeat("r1", 60_000) == 1
    assert await store.relay_heartbeat("r2", 60_000) == 2
    assert await store.relay_heartbeat("r1", 60_000) == 2  # a renewal is not a new relay
    assert await store.relay_heartbeat("r3", 50) == 3
    await asyncio.sleep(0.15)
    assert await store.relay_heartbeat("r1", 60_000) == 2  # r3 lapsed


async def test_a_lease_taken_afresh_is_told_apart_from_a_renewal(store: RedisStore) -> None:
    assert await store.acquire_partition(0, OWNER, 60) == 1
    assert await store.acquire_partition(0, OWNER, 60) == 2
    await asyncio.sleep(0.1)  # lapsed: taking it again is fresh, whatever we held in memory
    assert await store.acquire_partition(0, OWNER, 60_000) == 1
    assert await store.acquire_partition(0, OTHER, 60_000) == 0


async def test_a_relay_that_leaves_is_counted_out_at_once(store: RedisStore) -> None:
    assert await store.relay_heartbeat("r1", 60_000) == 1
    assert await store.relay_heartbeat("r2", 60_000) == 2
    await store.relay_leave("r2")
    assert await store.relay_heartbeat("r1", 60_000) == 1


async def test_begin_attempt_counts_and_loads_the_record_in_one_go(store: RedisStore) -> None:
    sender = SenderId("s-begin")
    assert await store.begin_attempt(0, "1-0", sender) == (1, None)
    await store.save_handoff(sender, {"state": "with_agent"}, 0)
    attempts, record = await store.begin_attempt(0, "1-0", sender)
    assert attempts == 2 and record is not None
    assert (record.fields, record.version) == ({"state": "with_agent"}, 1)


async def test_an_enqueue_rings_the_doorbell_only_when_asked(store: RedisStore) -> None:
    """The bell wakes the consumer of a partition in another process; an enqueue into a
    partition this process consumes does not ring (its own kick does)."""
    up = asyncio.Event()
    bells: asyncio.Queue[int] = asyncio.Queue()

    async def listen() -> None:
        async for partition in store.bells(up.set):
            bells.put_nowait(partition)

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(up.wait(), 10)
        assert await store.enqueue_event(1, EventId("quiet"), "p", TTL_S)
        assert await store.enqueue_event(3, EventId("rung"), "p", TTL_S, ring=True)
        assert not await store.enqueue_event(3, EventId("rung"), "p", TTL_S, ring=True)  # dup
        assert await asyncio.wait_for(bells.get(), 5) == 3  # the quiet one rang nothing
        assert await store.enqueue_event(2, EventId("next"), "p", TTL_S, ring=True)
        assert await asyncio.wait_for(bells.get(), 5) == 2  # nor did the duplicate
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def test_a_burst_of_commands_waits_for_connections_instead_of_failing(
    store: RedisStore,
) -> None:
    """More commands in flight at once than the connection pool holds (redis-py's own pool
    fails past 100): each waits its turn; none fails."""
    enqueued = await asyncio.gather(
        *(store.enqueue_event(i % 4, EventId(f"burst-{i}"), "p", TTL_S) for i in range(400))
    )
    assert all(enqueued)
    assert sum([len(await store.read_events(p, 500)) for p in range(4)]) == 400
