"""The webhook's claim of an 8x8 event id: one per deployment, bound to the body's hash, kept
in a field of its shard's hash for the time bucket it was claimed in, settled by the delivery;
claims written before (a key per event id) honoured on a single Redis; and the enqueue step it
guards."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time

import pytest
from redis.asyncio.cluster import RedisCluster

from bridge.errors import StaleClaim
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import Claim, RedisStore
from bridge.store.base import RunAck, RunMessage
from bridge.store.keys import (
    ENQUEUED_AFTER_DELIVERY_MS,
    MAX_CLAIM_TO_ENQUEUE_MS,
    claim_bucket_ms,
    claim_buckets,
)

TTL_S = 3600
E = EventId("evt-1")
BODY = hashlib.sha256(b'{"eventType":"TEXT"}').hexdigest()
OTHER = hashlib.sha256(b"another body").hexdigest()


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


async def _state(store: RedisStore, event_id: EventId = E, body: str = "h1") -> Claim:
    return (await store.claim_event(event_id, body, settled=False)).state


def _claims_key(store: RedisStore, bucket_of_ms: int, event_id: EventId = E) -> str:
    """The hash a claim made at `bucket_of_ms` (the store's clock) goes into."""
    where = claim_buckets(event_id, bucket_of_ms, store.event_dedupe_ttl_s)
    return store.keys.event_claims(where.shard, where.current)


async def _held(store: RedisStore, key: str, event_id: EventId = E) -> str | None:
    field = claim_buckets(event_id, 0, store.event_dedupe_ttl_s).field
    return _text(await store.redis.hget(key, field))  # type: ignore[misc]


def _clock_at(store: RedisStore, ms: int) -> None:
    store.clock = lambda: ms / 1000


async def test_a_new_id_is_claimed_then_seen_as_done_once_settled(store: RedisStore) -> None:
    assert (await store.claim_event(E, "h1", settled=False)).state is Claim.NEW
    assert await _state(store) is Claim.PENDING
    await store.settle_event(E)
    assert await _state(store) is Claim.DONE


async def test_an_event_that_is_not_enqueued_is_done_at_once(store: RedisStore) -> None:
    assert (await store.claim_event(E, "h1", settled=True)).state is Claim.NEW
    assert (await store.claim_event(E, "h1", settled=True)).state is Claim.DONE


async def test_the_same_id_with_another_body_is_a_conflict_in_every_state(
    store: RedisStore,
) -> None:
    assert (await store.claim_event(E, "h1", settled=False)).state is Claim.NEW
    assert (await store.claim_event(E, "h2", settled=False)).state is Claim.CONFLICT
    assert await _state(store) is Claim.PENDING
    await store.settle_event(E)
    assert (await store.claim_event(E, "h2", settled=True)).state is Claim.CONFLICT
    assert (await store.claim_event(E, "h1", settled=True)).state is Claim.DONE


async def test_a_claim_is_a_compact_field_of_its_buckets_hash(
    store: RedisStore, backend_url: str | None
) -> None:
    """18 bytes of the SHA-256 in base64 under a 12-character field: small enough for the
    hash's listpack encoding (which the embedded store does not report)."""
    now = int(time.time() * 1000)
    _clock_at(store, now)
    await store.claim_event(E, BODY, settled=False)
    key = _claims_key(store, now)
    compact = base64.b64encode(bytes.fromhex(BODY)[:18]).decode()
    assert await _held(store, key) == "p" + compact
    if backend_url is not None:
        assert _text(await store.redis.object("encoding", key)) == "listpack"
    assert not await store.redis.exists(store.keys.event_claim(E))
    assert (await store.claim_event(E, OTHER, settled=False)).state is Claim.CONFLICT
    assert (await store.claim_event(E, BODY, settled=False)).state is Claim.PENDING


async def test_a_claim_is_kept_a_ttl_past_its_buckets_end_and_settling_keeps_that(
    store: RedisStore,
) -> None:
    store.event_dedupe_ttl_s = 100
    width = claim_bucket_ms(100)
    real = int(time.time() * 1000)
    # A bucket whose end is ahead of Redis's clock by more than the test takes.
    start = real // width * width + (width if real % width > width - 5_000 else 0)
    _clock_at(store, start)
    await store.claim_event(E, "h", settled=False)
    key = _claims_key(store, start)

    async def expiry() -> int:
        return int(time.time() * 1000) + await store.redis.pttl(key)

    assert start + width + 100_000 - 2_000 <= await expiry() <= start + width + 100_000
    await store.settle_event(E)
    assert await _held(store, key) == "dh"
    assert start + width + 100_000 - 2_000 <= await expiry() <= start + width + 100_000


async def test_a_claim_found_across_a_bucket_boundary_is_settled_where_it_is(
    store: RedisStore,
) -> None:
    """The clock moves on into the next bucket (and on to the TTL's end): the claim is still
    found in the bucket it was made in, settled there, and never copied."""
    store.event_dedupe_ttl_s = 240
    width = claim_bucket_ms(240)
    before_end = (int(time.time() * 1000) // width + 1) * width - 1
    _clock_at(store, before_end)
    assert await _state(store) is Claim.NEW
    old, new = _claims_key(store, before_end), _claims_key(store, before_end + 1)
    assert old != new
    _clock_at(store, before_end + 1)
    assert await _state(store) is Claim.PENDING
    assert await _state(store, body="h2") is Claim.CONFLICT
    await store.settle_event(E)
    assert await _held(store, old) == "dh1"
    assert await _held(store, new) is None
    _clock_at(store, before_end + 240_000)  # still within the TTL of the claim
    assert await _state(store) is Claim.DONE


async def test_the_relays_ack_settles_a_claim_in_an_older_bucket(store: RedisStore) -> None:
    store.event_dedupe_ttl_s = 240
    width = claim_bucket_ms(240)
    before_end = (int(time.time() * 1000) // width + 1) * width - 1
    _clock_at(store, before_end)
    entry_id = await _claimed_entry(store)
    _clock_at(store, before_end + width)  # delivered a bucket later
    assert await store.ack_event(1, entry_id, "w", E, claimed=True)
    assert await _held(store, _claims_key(store, before_end)) == "dh"


def test_the_keys_a_claim_names_follow_the_clock_bucket_by_bucket(store: RedisStore) -> None:
    """Whatever the store keeps between claims, each names exactly the hashes of the buckets
    around its own clock, whichever way the clock moves (a TTL that is no multiple of the
    bucket width moves the first and the last bucket at different times)."""
    store.event_dedupe_ttl_s = 100
    width = claim_bucket_ms(100)
    start = 1_800_000_000_000 // width * width
    times = [start + k * width // 3 - 1 for k in range(12)]
    for at in [*times, *reversed(times)]:
        _clock_at(store, at)
        for event_id in (E, EventId("evt-2")):
            where = claim_buckets(event_id, at, 100)
            hashes = [store.keys.event_claims(where.shard, where.first + i)
                      for i in range(where.buckets)]  # fmt: skip
            before = [] if store.line is None else [store.keys.event_claim(event_id)]
            assert store._claim_keys(event_id) == (where, [*hashes, *before])


def _compact(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)[:18]).decode()


@pytest.mark.parametrize(
    "held",
    [f"p{_compact(BODY)}", f"d{_compact(BODY)}", f"p:{BODY}", f"d:{BODY}"],
)
async def test_a_claim_written_before_the_hashes_is_honoured_on_a_single_redis(
    store: RedisStore, held: str
) -> None:
    """The claims of the version before (a key per event id, in either form it wrote) count for
    the dedupe and are settled in place until they expire. On a Cluster they live in another
    slot than the hashes, so they are not read (docs/security-webhook.md, "Upgrading")."""
    legacy = store.keys.event_claim(E)
    await store.redis.set(legacy, held, ex=TTL_S)
    if isinstance(store.redis, RedisCluster):
        assert await _state(store, body=BODY) is Claim.NEW
        await store.settle_event(E)
        assert _text(await store.redis.get(legacy)) == held
        return
    assert await _state(store, body=OTHER) is Claim.CONFLICT
    expected = Claim.PENDING if held.startswith("p") else Claim.DONE
    assert await _state(store, body=BODY) is expected
    await store.settle_event(E)
    assert await _state(store, body=BODY) is Claim.DONE
    assert _text(await store.redis.get(legacy)) == "d" + held[1:]
    assert 0 < await store.redis.ttl(legacy) <= TTL_S
    now = int(time.time() * 1000)
    assert await _held(store, _claims_key(store, now)) is None  # nothing written beside it


async def test_a_claim_reports_the_stores_clock(store: RedisStore) -> None:
    claimed = await store.claim_event(E, "h1", settled=False)
    again = await store.claim_event(E, "h1", settled=False)
    assert claimed.at_ms <= again.at_ms
    assert abs(claimed.at_ms - time.time() * 1000) < 60_000  # a clock in ms, not in s or µs


async def test_concurrent_claims_of_one_id_make_one_new(store: RedisStore) -> None:
    found = await asyncio.gather(*(store.claim_event(E, "h", settled=False) for _ in range(20)))
    states = [f.state for f in found]
    assert states.count(Claim.NEW) == 1
    assert set(states) == {Claim.NEW, Claim.PENDING}


async def test_redoing_the_enqueue_appends_once_even_after_delivery(store: RedisStore) -> None:
    """The second step is safe to redo: a retry after a crash cannot double the event, even
    when the relay delivered and acknowledged it in between."""
    assert await store.enqueue_event(1, E, "p", TTL_S)
    assert not await store.enqueue_event(1, E, "p", TTL_S)
    [entry] = await store.read_events(1, 10)
    assert entry.event_id == E and not entry.claimed
    assert await store.acquire_partition(1, "w", 10_000)
    assert await store.ack_event(1, entry.entry_id, "w")
    assert not await store.enqueue_event(1, E, "p", TTL_S)
    assert await store.read_events(1, 10) == []


async def test_an_enqueue_too_long_after_its_claim_writes_nothing(store: RedisStore) -> None:
    claimed = await store.claim_event(E, "h", settled=False)
    late = claimed.at_ms - MAX_CLAIM_TO_ENQUEUE_MS - 1
    with pytest.raises(StaleClaim):
        await store.enqueue_event(1, E, "p", TTL_S, claimed_ms=late)
    assert await store.read_events(1, 10) == []
    assert not await store.redis.exists(store.keys.enqueued(1, E))
    # In time, it goes in, marked as the webhook's; once in, a late redo is a plain duplicate.
    assert await store.enqueue_event(1, E, "p", TTL_S, claimed_ms=claimed.at_ms)
    assert not await store.enqueue_event(1, E, "p", TTL_S, claimed_ms=late)
    [entry] = await store.read_events(1, 10)
    assert entry.claimed


async def _claimed_entry(store: RedisStore, ttl_s: int = TTL_S) -> str:
    claimed = await store.claim_event(E, "h", settled=False)
    assert await store.enqueue_event(1, E, "p", ttl_s, claimed_ms=claimed.at_ms)
    [entry] = await store.read_events(1, 10)
    assert await store.acquire_partition(1, "w", 10_000)
    return entry.entry_id


async def test_delivery_settles_the_claim_then_lets_the_marker_go(store: RedisStore) -> None:
    entry_id = await _claimed_entry(store)
    assert await store.ack_event(1, entry_id, "w", E, claimed=True)
    assert (await store.claim_event(E, "h", settled=False)).state is Claim.DONE
    left = await store.redis.pttl(store.keys.enqueued(1, E))
    assert 0 < left <= ENQUEUED_AFTER_DELIVERY_MS
    assert await store.read_events(1, 10) == []


async def test_an_agent_messages_delivery_settles_and_lets_go_too(store: RedisStore) -> None:
    entry_id = await _claimed_entry(store)
    cid = "conv-1"
    k, claim = await store.claim_message(1, cid, "w", "dg", E, 0)  # type: ignore[arg-type]
    assert await store.ack_message(1, entry_id, "w", cid, "dg", k, E, claimed=True)  # type: ignore[arg-type]
    assert (await store.claim_event(E, "h", settled=False)).state is Claim.DONE
    assert 0 < await store.redis.pttl(store.keys.enqueued(1, E)) <= ENQUEUED_AFTER_DELIVERY_MS
    fields = await store.redis.hgetall(store.keys.delivered(1, cid))  # type: ignore[arg-type]
    delivered = {_text(f): _text(v) for f, v in fields.items()}
    assert delivered == {f"dg:{k}": "d"}  # delivered; the event's ordinal is forgotten


async def test_letting_go_never_lengthens_the_marker(store: RedisStore) -> None:
    entry_id = await _claimed_entry(store, ttl_s=5)
    assert await store.ack_event(1, entry_id, "w", E, claimed=True)
    assert 0 < await store.redis.pttl(store.keys.enqueued(1, E)) <= 5_000


async def test_a_fenced_out_ack_keeps_the_marker(store: RedisStore) -> None:
    """The claim may be settled (the entry is still in the stream, so no retry can be enqueued
    twice), but the marker stays until the new lease holder delivers it."""
    entry_id = await _claimed_entry(store)
    assert not await store.ack_event(1, entry_id, "someone-else", E, claimed=True)
    assert await store.redis.ttl(store.keys.enqueued(1, E)) > 60
    assert [e.entry_id for e in await store.read_events(1, 10)] == [entry_id]


async def test_a_runs_delivery_settles_and_lets_go_what_the_webhook_claimed(
    store: RedisStore,
) -> None:
    """A run's ack: each message whose webhook claim waits for it is settled and its marker
    let go, as one at a time; a message the webhook did not claim (recovery's) is only
    acknowledged and recorded. Every message's ordinal is forgotten with its entry."""
    cid = ConversationId("conv-1")
    other = EventId("evt-2")
    for event_id in (E, other):
        claimed = await store.claim_event(event_id, "h", settled=False)
        assert await store.enqueue_event(1, event_id, "p", TTL_S, claimed_ms=claimed.at_ms)
    listed = EventId("msg:" + "ab" * 16 + ":1")
    assert await store.enqueue_event(1, listed, "p", TTL_S)
    entries = await store.read_events(1, 10)
    assert [e.claimed for e in entries] == [True, True, False]
    assert await store.acquire_partition(1, "w", 10_000)
    run = [RunMessage(e.entry_id, e.event_id, "dg", 0) for e in entries]
    claims, _ = await store.claim_and_begin_run(1, cid, "w", run, SenderId("ada"))
    done = [
        RunAck(e.entry_id, "dg", c.ordinal, e.event_id, e.claimed)
        for e, c in zip(entries, claims, strict=True)
    ]
    assert not await store.ack_messages(1, "someone-else", cid, done)
    for event_id in (E, other):  # fenced out: the markers stay with the entries
        assert await store.redis.ttl(store.keys.enqueued(1, event_id)) > 60
    assert await store.ack_messages(1, "w", cid, done)
    assert await store.read_events(1, 10) == []
    for event_id in (E, other):
        assert (await store.claim_event(event_id, "h", settled=False)).state is Claim.DONE
        left = await store.redis.pttl(store.keys.enqueued(1, event_id))
        assert 0 < left <= ENQUEUED_AFTER_DELIVERY_MS
    fields = await store.redis.hgetall(store.keys.delivered(1, cid))
    delivered = {_text(f): _text(v) for f, v in fields.items()}
    # all three delivered, their ordinals forgotten; the listed one's marker is kept whole
    assert delivered == {"dg:1": "d", "dg:2": "d", "dg:3": "d"}
    assert await store.redis.ttl(store.keys.enqueued(1, listed)) > 60


def test_a_store_is_freed_without_the_cycle_collector() -> None:
    """Nothing the store keeps refers back to it: dropped, it goes at once (its client and
    line with it), not at the next collection, which serve makes rare."""
    import gc
    import weakref

    import fakeredis

    store = RedisStore(fakeredis.FakeAsyncRedis(decode_responses=True))
    store._claim_keys(EventId("evt-1"))
    gone = weakref.ref(store)
    gc.disable()
    try:
        del store
        assert gone() is None
    finally:
        gc.enable()
