"""The outbox: per-sender queues of user messages, and the index of senders to drain."""

from __future__ import annotations

from bridge.ids import SenderId
from bridge.store import RedisStore
from bridge.store.keys import OUTBOX_TTL_MS

S = SenderId("sender-1")
T = SenderId("sender-2")


async def test_push_peek_pop_in_order(store: RedisStore) -> None:
    assert await store.outbox_push(S, "m1") == 1
    assert await store.outbox_push(S, "m2") == 2
    assert await store.outbox_peek(S) == "m1"
    await store.outbox_pop(S, "m1")
    assert await store.outbox_peek(S) == "m2"
    await store.outbox_pop(S, "m2")
    assert await store.outbox_peek(S) is None


async def test_pop_only_removes_the_expected_head(store: RedisStore) -> None:
    await store.outbox_push(S, "m1")
    await store.outbox_push(S, "m2")
    await store.outbox_pop(S, "m2")  # not the head (someone else popped m1 meanwhile?)
    assert await store.outbox_peek(S) == "m1"
    await store.outbox_pop(S, "m1")
    await store.outbox_pop(S, "m1")  # a second drainer's late pop must not take m2
    assert await store.outbox_peek(S) == "m2"


async def test_senders_join_and_leave_the_index(store: RedisStore) -> None:
    assert await store.outbox_senders() == []
    await store.outbox_push(S, "m1")
    await store.outbox_push(T, "m1")
    assert await store.outbox_senders() == [S, T]
    await store.outbox_pop(S, "m1")
    assert await store.outbox_senders() == [T]


async def test_peek_repairs_a_stale_index_entry(store: RedisStore) -> None:
    await store.redis.hset(store.keys.outbox_index(), S, "t")  # e.g. the list expired
    assert await store.outbox_senders() == [S]
    assert await store.outbox_peek(S) is None
    assert await store.outbox_senders() == []


async def test_outbox_has_a_ttl(store: RedisStore) -> None:
    await store.outbox_push(S, "m1")
    assert OUTBOX_TTL_MS - 60_000 < await store.redis.pttl(store.keys.outbox(S)) <= OUTBOX_TTL_MS
