"""The key schema: hash tags that keep related keys in one slot, and TTLs on what expires."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest
from redis.crc import key_slot

from bridge.ids import ConversationId, EventId, SenderId
from bridge.store.keys import CLAIM_SHARDS, Keys, claim_buckets

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


NOW = 1_795_936_200_000  # 2026-11-29 07:10:00 UTC: 70 min into a 6 h bucket, 10 into a 15 min one


@pytest.mark.parametrize(
    ("ttl_s", "now_ms", "width", "first", "count", "current"),
    [
        # a day: 6 h buckets; from now - 30 h to now + 6 h
        (86_400, NOW, 21_600_000, 83_140, 7, 83_145),
        # an hour: 15 min buckets
        (3600, NOW, 900_000, 1_995_479, 7, 1_995_484),
        # a bucket's first ms and its last: the same seven
        (3600, 900_000 * 2_000_000, 900_000, 2_000_000 - 5, 7, 2_000_000),
        (3600, 900_000 * 2_000_001 - 1, 900_000, 2_000_000 - 5, 7, 2_000_000),
        # TTLs under 4 min: 1 min buckets, fewer behind
        (60, 60_000 * 1000 + 30_000, 60_000, 1000 - 2, 4, 1000),
        (100, 60_000 * 1000 + 30_000, 60_000, 1000 - 3, 5, 1000),
    ],
)
def test_claim_buckets_cover_the_ttl_and_a_bucket_of_skew_each_way(
    ttl_s: int, now_ms: int, width: int, first: int, count: int, current: int
) -> None:
    where = claim_buckets(EventId("evt-1"), now_ms, ttl_s)
    assert (where.width_ms, where.first, where.buckets, where.current) == (
        width, first, count, current,
    )  # fmt: skip
    assert where.first * width <= now_ms - ttl_s * 1000 - width  # the oldest a claim may be in
    assert (where.first + count) * width > now_ms + width  # the newest
    assert where.current_end_ms == (current + 1) * width


@pytest.mark.parametrize(
    ("event_id", "shard"),
    [
        ("evt-1", zlib.crc32(b"evt-1") % CLAIM_SHARDS),
        ("ü}{", zlib.crc32("ü}{".encode()) % 256),
        ("", 0),
    ],
)
def test_a_claims_shard_and_field_depend_on_the_event_id_alone(event_id: str, shard: int) -> None:
    a = claim_buckets(EventId(event_id), NOW, 3600)
    b = claim_buckets(EventId(event_id), NOW + 10 * 86_400_000, 86_400)
    assert (a.shard, a.field) == (b.shard, b.field)
    assert a.shard == shard
    digest = hashlib.sha256(event_id.encode()).digest()[:9]
    assert base64.b64decode(a.field) == digest and len(a.field) == 12


def test_claims_spread_over_every_shard_and_a_shards_buckets_share_a_slot() -> None:
    shards = {claim_buckets(EventId(f"evt-{i}"), NOW, 3600).shard for i in range(5000)}
    assert shards == set(range(CLAIM_SHARDS))
    where = claim_buckets(EventId("evt-1"), NOW, 3600)
    keys = [K.event_claims(where.shard, where.first + i) for i in range(where.buckets)]
    assert len(set(keys)) == where.buckets and len({slot(k) for k in keys}) == 1
