"""The key schema: hash tags that keep related keys in one slot, and TTLs on what expires."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from bridge.ids import ConversationId, EventId, SenderId
from bridge.store.keys import Keys

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
