"""The key schema: hash tags that keep related keys in one slot, and TTLs on what expires."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import RedisStore
from bridge.store.keys import Keys

from .conftest import OWNER

K = Keys("pre:")


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


@pytest.mark.parametrize("sender", ["alice", "a}b", "{x}", "ü-sender", ""])
def test_all_keys_of_a_sender_share_a_slot(sender: str) -> None:
    s = SenderId(sender)
    keys = [K.record(s), K.sender_lease(s), K.outbox(s)]
    assert len({slot(k) for k in keys}) == 1, keys


@pytest.mark.parametrize("partition", [0, 7, 15])
def test_all_keys_of_a_partition_share_a_slot(partition: int) -> None:
    keys = [
        *K.partition_keys(partition),
        K.enqueued(partition, EventId("evt-1")),
        K.enqueued(partition, EventId("}{weird")),
        K.hold(partition, ConversationId("conv-1")),
        K.hold(partition, ConversationId("c}{")),
    ]
    assert len({slot(k) for k in keys}) == 1, keys


def test_partitions_spread_over_slots() -> None:
    assert len({slot(K.stream(p)) for p in range(16)}) == 16


def test_keys_are_versioned_and_prefixed() -> None:
    assert K.record(SenderId("s")).startswith("pre:hb:v1:")
    assert Keys().stream(0).startswith("hb:v1:")


@pytest.mark.parametrize("prefix", ["a{b:", "x}"])
def test_a_prefix_with_braces_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        Keys(prefix)


def test_ids_cannot_make_keys_collide() -> None:
    # Suffixes after an id never contain "}", so distinct ids give distinct keys.
    a, b = SenderId("x"), SenderId("x}:rec")
    assert K.record(b) not in {K.record(a), K.sender_lease(a), K.outbox(a)}


# Key kinds that live without a TTL (the reasons are in keys.py), and those that expire.
NO_TTL = {"stream", "attempts", "dead", "held", "heldby", "hold", "senders"}
WITH_TTL = {"rec", "lease", "outbox", "sender", "enq", "claim"}


def kind(key: str) -> str:
    """The name after the hash tag, without its id: "rec", "evt", "hold", ..."""
    return key.rsplit("}:", 1)[1].split(":")[0]


async def test_only_documented_keys_live_without_ttl(store: RedisStore, key_prefix: str) -> None:
    """Run every write path, then look at the TTL of each key under this test's prefix."""
    s, c = SenderId("s1"), ConversationId("c1")
    await store.link(s, c)
    assert await store.save_handoff(s, {"state": "live"}, 1)
    assert await store.acquire_sender_lease(s, 60_000)
    await store.outbox_push(s, "m")
    assert await store.acquire_partition(0, OWNER, 60_000)
    for event_id in ("e1", "e2", "e3"):
        await store.claim_event(EventId(event_id), "h", 60, settled=False)
        assert await store.enqueue_event(0, EventId(event_id), "p", 60)
    e1, e2, e3 = await store.read_events(0, 10)
    await store.note_attempt(0, e3.entry_id)
    assert await store.hold_event(0, ConversationId("c2"), e1, 1, OWNER)
    assert await store.dead_letter(0, e2, "r", OWNER)

    ttls = {k: await store.redis.pttl(k) async for k in store.redis.scan_iter(f"{key_prefix}*")}
    assert {kind(k) for k, ttl in ttls.items() if ttl == -1} == NO_TTL
    assert {kind(k) for k, ttl in ttls.items() if ttl > 0} == WITH_TTL
