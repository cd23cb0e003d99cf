"""Sender <-> conversation mapping, the handoff record (CAS), and the per-sender lease."""

from __future__ import annotations

import asyncio

import pytest

from bridge.ids import ConversationId, SenderId
from bridge.store import RedisStore
from bridge.store.keys import MAPPING_TTL_MS, live_shard

S = SenderId("sender-1")
C = ConversationId("conv-1")


async def test_link_maps_both_ways(store: RedisStore) -> None:
    await store.link(S, C)
    assert await store.sender_of(C) == S
    record = await store.load_handoff(S)
    assert record is not None
    assert record.fields == {"conversation_id": C}
    assert record.version == 1


async def test_unknown_conversation_has_no_sender(store: RedisStore) -> None:
    assert await store.sender_of(ConversationId("nobody")) is None


async def test_half_written_link_reverse_only_is_not_valid(store: RedisStore) -> None:
    # What a crash between the two steps of `link` leaves (see test_link_crash.py).
    await store.redis.set(store.keys.conversation(C), S, px=MAPPING_TTL_MS)
    assert await store.sender_of(C) is None


async def test_half_written_link_forward_only_is_not_valid(store: RedisStore) -> None:
    # What the service leaves if it dies after saving the record and before linking.
    await store.redis.hset(store.keys.record(S), mapping={"conversation_id": C, "_v": "1"})
    await store.redis.pexpire(store.keys.record(S), MAPPING_TTL_MS)
    assert await store.sender_of(C) is None


async def test_relinked_sender_leaves_old_conversation_unmapped(store: RedisStore) -> None:
    new = ConversationId("conv-2")
    await store.link(S, C)
    await store.link(S, new)
    assert await store.sender_of(new) == S
    assert await store.sender_of(C) is None  # agent messages there no longer reach S


async def test_link_sets_long_finite_ttls(store: RedisStore) -> None:
    await store.link(S, C)
    for key in (store.keys.record(S), store.keys.conversation(C)):
        ttl = await store.redis.pttl(key)
        assert MAPPING_TTL_MS - 60_000 < ttl <= MAPPING_TTL_MS, key


async def test_no_record_loads_none(store: RedisStore) -> None:
    assert await store.load_handoff(S) is None


async def test_save_version_zero_creates(store: RedisStore) -> None:
    assert await store.save_handoff(S, {"state": "requested", "queue": "q1"}, 0)
    record = await store.load_handoff(S)
    assert record is not None
    assert record.fields == {"state": "requested", "queue": "q1"}
    assert record.version == 1
    assert await store.redis.pttl(store.keys.record(S)) > MAPPING_TTL_MS - 60_000


async def test_save_with_stale_version_is_refused(store: RedisStore) -> None:
    assert await store.save_handoff(S, {"state": "requested"}, 0)
    assert not await store.save_handoff(S, {"state": "other"}, 0)
    assert not await store.save_handoff(S, {"state": "other"}, 7)
    record = await store.load_handoff(S)
    assert record is not None
    assert record.fields == {"state": "requested"}
    assert record.version == 1


async def test_save_replaces_fields_and_bumps_version(store: RedisStore) -> None:
    assert await store.save_handoff(S, {"state": "requested", "queue": "q1"}, 0)
    assert await store.save_handoff(S, {"state": "live", "agent": "Bo"}, 1)
    record = await store.load_handoff(S)
    assert record is not None
    assert record.fields == {"state": "live", "agent": "Bo"}  # "queue" is gone
    assert record.version == 2


async def test_save_keeps_conversation_id_unless_given(store: RedisStore) -> None:
    await store.link(S, C)
    assert await store.save_handoff(S, {"state": "live"}, 1)
    record = await store.load_handoff(S)
    assert record is not None
    assert record.fields == {"state": "live", "conversation_id": C}
    assert await store.sender_of(C) == S
    assert await store.save_handoff(S, {"state": "idle", "conversation_id": "conv-9"}, 2)
    record = await store.load_handoff(S)
    assert record is not None
    assert record.fields["conversation_id"] == "conv-9"


async def test_link_bumps_version_so_a_stale_writer_retries(store: RedisStore) -> None:
    assert await store.save_handoff(S, {"state": "requested"}, 0)
    await store.link(S, C)  # the action links while the relay holds version 1
    assert not await store.save_handoff(S, {"state": "queued"}, 1)
    record = await store.load_handoff(S)
    assert record is not None
    assert record.version == 2
    assert record.fields == {"state": "requested", "conversation_id": C}


async def test_save_refreshes_the_reverse_mapping(store: RedisStore) -> None:
    await store.link(S, C)
    await store.redis.pexpire(store.keys.conversation(C), 5_000)
    assert await store.save_handoff(S, {"state": "live"}, 1)
    assert await store.redis.pttl(store.keys.conversation(C)) > MAPPING_TTL_MS - 60_000


async def test_a_write_that_only_notes_the_time_refreshes_nothing_beside_the_record(
    store: RedisStore,
) -> None:
    """The mapping and the live index are refreshed when the state changes, and by the first
    write of a day; not by each of a handoff's many same-state writes (an agent's every word)."""
    await store.link(S, C)
    reverse, index = store.keys.conversation(C), store.keys.live_handoffs(live_shard(S))
    assert await store.save_handoff(S, {"state": "with_agent", "agent_ms": "1"}, 1)
    assert await store.redis.zscore(index, S) is not None  # live: indexed
    await store.redis.pexpire(reverse, 5_000)
    await store.redis.zrem(index, S)
    assert await store.save_handoff(S, {"state": "with_agent", "agent_ms": "2"}, 2)
    assert await store.redis.pttl(reverse) <= 5_000
    assert await store.redis.zscore(index, S) is None
    # The first write of another day refreshes them (as if the last refresh was yesterday).
    await store.redis.hset(store.keys.record(S), "_r", "0")
    assert await store.save_handoff(S, {"state": "with_agent", "agent_ms": "3"}, 3)
    assert await store.redis.pttl(reverse) > MAPPING_TTL_MS - 60_000
    assert await store.redis.zscore(index, S) is not None
    # So does a change of state (here, out of the index: the handoff is over).
    assert await store.save_handoff(S, {"state": "bot"}, 4)
    assert await store.redis.zscore(index, S) is None
    record = await store.load_handoff(S)
    assert record is not None and "_r" not in record.fields


@pytest.mark.parametrize("field", ["_v", "_r"])
async def test_the_stores_own_fields_are_reserved(store: RedisStore, field: str) -> None:
    with pytest.raises(ValueError):
        await store.save_handoff(S, {field: "9"}, 0)


async def test_concurrent_saves_of_one_version_write_once(store: RedisStore) -> None:
    assert await store.save_handoff(S, {"state": "requested"}, 0)
    results = await asyncio.gather(
        *(store.save_handoff(S, {"state": f"s{i}"}, 1) for i in range(10))
    )
    assert results.count(True) == 1
    record = await store.load_handoff(S)
    assert record is not None
    assert record.version == 2


async def test_sender_lease_is_exclusive(store: RedisStore) -> None:
    token = await store.acquire_sender_lease(S, 10_000)
    assert token
    assert await store.acquire_sender_lease(S, 10_000) is None
    assert await store.acquire_sender_lease(SenderId("someone-else"), 10_000)


async def test_sender_lease_expires(store: RedisStore) -> None:
    first = await store.acquire_sender_lease(S, 60)
    assert first
    await asyncio.sleep(0.15)
    second = await store.acquire_sender_lease(S, 10_000)
    assert second and second != first


async def test_sender_lease_released_only_by_its_token(store: RedisStore) -> None:
    token = await store.acquire_sender_lease(S, 10_000)
    assert token
    await store.release_sender_lease(S, "not-the-token")
    assert await store.acquire_sender_lease(S, 10_000) is None
    await store.release_sender_lease(S, token)
    assert await store.acquire_sender_lease(S, 10_000)


async def test_lapsed_holder_cannot_release_the_next_holders_lease(store: RedisStore) -> None:
    old = await store.acquire_sender_lease(S, 50)
    assert old
    await asyncio.sleep(0.12)
    new = await store.acquire_sender_lease(S, 10_000)
    assert new
    await store.release_sender_lease(S, old)
    assert await store.acquire_sender_lease(S, 10_000) is None


async def test_concurrent_sender_leases_give_one_token(store: RedisStore) -> None:
    tokens = await asyncio.gather(*(store.acquire_sender_lease(S, 10_000) for _ in range(20)))
    assert len([t for t in tokens if t is not None]) == 1
