"""The webhook's claim of an 8x8 event id: one per deployment, bound to the body's hash."""

from __future__ import annotations

import asyncio

from bridge.ids import EventId
from bridge.store import Claim, RedisStore

TTL_S = 3600
E = EventId("evt-1")


async def test_a_new_id_is_claimed_then_seen_as_done_once_settled(store: RedisStore) -> None:
    assert await store.claim_event(E, "h1", TTL_S, settled=False) is Claim.NEW
    assert await store.claim_event(E, "h1", TTL_S, settled=False) is Claim.PENDING
    await store.settle_event(E, "h1")
    assert await store.claim_event(E, "h1", TTL_S, settled=False) is Claim.DONE
    assert 0 < await store.redis.ttl(store.keys.event_claim(E)) <= TTL_S


async def test_an_event_that_is_not_enqueued_is_done_at_once(store: RedisStore) -> None:
    assert await store.claim_event(E, "h1", TTL_S, settled=True) is Claim.NEW
    assert await store.claim_event(E, "h1", TTL_S, settled=True) is Claim.DONE


async def test_the_same_id_with_another_body_is_a_conflict_in_every_state(
    store: RedisStore,
) -> None:
    assert await store.claim_event(E, "h1", TTL_S, settled=False) is Claim.NEW
    assert await store.claim_event(E, "h2", TTL_S, settled=False) is Claim.CONFLICT
    await store.settle_event(E, "h2")  # a conflicting body cannot settle the claim
    assert await store.claim_event(E, "h1", TTL_S, settled=False) is Claim.PENDING
    await store.settle_event(E, "h1")
    assert await store.claim_event(E, "h2", TTL_S, settled=True) is Claim.CONFLICT
    assert await store.claim_event(E, "h1", TTL_S, settled=True) is Claim.DONE


async def test_concurrent_claims_of_one_id_make_one_new(store: RedisStore) -> None:
    found = await asyncio.gather(
        *(store.claim_event(E, "h", TTL_S, settled=False) for _ in range(20))
    )
    assert found.count(Claim.NEW) == 1
    assert set(found) == {Claim.NEW, Claim.PENDING}


async def test_settling_keeps_the_claims_ttl(store: RedisStore) -> None:
    await store.claim_event(E, "h", 100, settled=False)
    await store.settle_event(E, "h")
    assert 0 < await store.redis.ttl(store.keys.event_claim(E)) <= 100


async def test_redoing_the_enqueue_appends_once_even_after_delivery(store: RedisStore) -> None:
    """The second step is safe to redo: a retry after a crash cannot double the event, even
    when the relay delivered and acknowledged it in between."""
    assert await store.enqueue_event(1, E, "p", TTL_S)
    assert not await store.enqueue_event(1, E, "p", TTL_S)
    [entry] = await store.read_events(1, 10)
    assert entry.event_id == E
    assert await store.acquire_partition(1, "w", 10_000)
    assert await store.ack_event(1, entry.entry_id, "w")
    assert not await store.enqueue_event(1, E, "p", TTL_S)
    assert await store.read_events(1, 10) == []
