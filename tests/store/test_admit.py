"""The door's claim and enqueue together (`Store.admit_event`): one step on a single Redis, the
two steps in order on a Cluster (`admit_in_steps`), with the same answers either way, but for
one: in one step a new claim is done at once (nothing can come between it and its append), so
a retry is a duplicate at once, where two steps keep the claim pending until the delivery."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from unittest.mock import ANY

import pytest
from redis.exceptions import ResponseError

from bridge.errors import StaleClaim
from bridge.handoff import State
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import Claim, RedisStore
from bridge.store.base import Admitted, Begin, MessageClaim, admit_in_steps

from .conftest import OWNER

BODY = hashlib.sha256(b"the body").hexdigest()
FORGED = hashlib.sha256(b"another body with the same CRC32").hexdigest()
C, S = ConversationId("c1"), SenderId("ada")

Admit = Callable[..., Awaitable[Admitted]]


def _one_step(store: RedisStore) -> Admit:
    return store.admit_event


def _in_steps(store: RedisStore) -> Admit:
    async def admit(*args: object, **kwargs: object) -> Admitted:
        return await admit_in_steps(store, *args, **kwargs)  # type: ignore[arg-type]

    return admit


WAYS = pytest.mark.parametrize("way", [_one_step, _in_steps], ids=["admit_event", "in_steps"])


async def _stream(store: RedisStore) -> list[tuple[str, bool]]:
    return [(e.event_id, e.claimed) for e in await store.read_events(0, 10)]


@WAYS
async def test_a_new_event_is_claimed_and_appended_once(
    store: RedisStore, way: Callable[[RedisStore], Admit]
) -> None:
    admit = way(store)
    apart = _apart(store, way)
    first = await admit(0, EventId("e1"), BODY, "p1", 3600)
    assert first.claim is Claim.NEW and first.enqueued is not None
    assert first.enqueued.entry.claimed is apart  # its delivery settles a pending claim
    assert first.enqueued.after == ""
    assert await _stream(store) == [("e1", apart)]
    # 8x8's retry while it waits: nothing appended again; the claim done at once in one step,
    # pending with this body in two
    retry = await admit(0, EventId("e1"), BODY, "p1", 3600)
    assert retry == Admitted(Claim.PENDING if apart else Claim.DONE, None)
    # a captured signature on a forged body: refused, nothing appended
    assert await admit(0, EventId("e1"), FORGED, "forged", 3600) == Admitted(Claim.CONFLICT, None)
    assert await _stream(store) == [("e1", apart)]


def _apart(store: RedisStore, way: Callable[[RedisStore], Admit]) -> bool:
    """Whether `way` claims and enqueues in two steps (a Cluster runs even `admit_event` so)."""
    return way is _in_steps or store.line is None


async def test_in_one_step_a_new_claim_leaves_nothing_for_the_delivery_to_settle(
    leased: RedisStore,
) -> None:
    """A single Redis: the claim is written done, no enqueued marker is written, and the ack
    (told the entry is not `claimed`) forgets the ordinal its event took, as for any entry."""
    if leased.line is None:
        pytest.skip("a Cluster claims and enqueues in two steps")
    e1 = EventId("e1")
    first = await leased.admit_event(0, e1, BODY, "p1", 3600)
    assert first.enqueued is not None and not first.enqueued.entry.claimed
    assert await leased.claim_event(e1, BODY, settled=False) == (Claim.DONE, ANY)
    assert not await leased.redis.exists(leased.keys.enqueued(0, e1))
    entry_id = first.enqueued.entry.entry_id
    ordinal, _, _, _ = await leased.claim_and_begin(0, C, OWNER, "d", e1, 0, entry_id, S)
    delivered = leased.keys.delivered(0, C)
    assert await leased.redis.hget(delivered, "e:e1") == str(ordinal)  # type: ignore[misc]
    assert await leased.ack_message(0, entry_id, OWNER, C, "d", ordinal, e1)
    assert await leased.redis.hgetall(delivered) == {"d:1": "d"}  # type: ignore[misc]
    assert await leased.read_events(0, 10) == []
    assert await leased.admit_event(0, e1, BODY, "p1", 3600) == Admitted(Claim.DONE, None)


@WAYS
async def test_a_delivered_event_is_a_duplicate_and_a_pending_claim_alone_is_completed(
    leased: RedisStore, way: Callable[[RedisStore], Admit]
) -> None:
    admit = way(leased)
    first = await admit(0, EventId("e1"), BODY, "p1", 3600)
    assert first.enqueued is not None
    entry = first.enqueued.entry
    await leased.ack_event(0, entry.entry_id, OWNER, entry.event_id, claimed=entry.claimed)
    assert await admit(0, EventId("e1"), BODY, "p1", 3600) == Admitted(Claim.DONE, None)
    # What a crash between a Cluster's two steps leaves: the claim, no entry. The retry
    # finds its own body's pending claim and appends.
    await leased.claim_event(EventId("e2"), BODY, settled=False)
    again = await admit(0, EventId("e2"), BODY, "p2", 3600)
    assert again.claim is Claim.PENDING and again.enqueued is not None
    assert await _stream(leased) == [("e2", True)]


@WAYS
async def test_an_admitted_event_can_take_the_relays_first_step(
    leased: RedisStore, way: Callable[[RedisStore], Admit]
) -> None:
    await leased.save_handoff(S, {"state": State.WITH_AGENT.value}, 0)
    begin = Begin(OWNER, C, "d", 0, S)
    got = await way(leased)(0, EventId("e1"), BODY, "p1", 3600, begin=begin)
    assert got.claim is Claim.NEW and got.enqueued is not None
    started = got.enqueued.started
    assert started is not None
    assert (started.ordinal, started.claim, started.attempts) == (1, MessageClaim.MINE, 1)
    assert started.record is not None and started.record.fields["state"] == State.WITH_AGENT.value
    # behind an entry the consumer has not read (frontier ""): appended, the step left to it
    later = await way(leased)(0, EventId("e2"), BODY, "p2", 3600, begin=begin)
    assert later.enqueued is not None and later.enqueued.started is None
    # refused by the claim: no step either
    forged = await way(leased)(0, EventId("e1"), FORGED, "forged", 3600, begin=begin)
    assert forged == Admitted(Claim.CONFLICT, None)
    assert await leased.redis.hlen(leased.keys.attempts(0)) == 1  # type: ignore[misc]


@WAYS
async def test_a_pending_claims_retry_takes_the_first_step_only_for_the_entry_it_appends(
    leased: RedisStore, way: Callable[[RedisStore], Admit]
) -> None:
    """8x8 retries an event whose claim is pending. With no entry (a crash between a Cluster's
    two steps) the retry appends it and may take the relay's first step for it; with the entry
    in the stream already (and begun) it appends nothing and begins nothing again."""
    await leased.save_handoff(S, {"state": State.WITH_AGENT.value}, 0)
    begin = Begin(OWNER, C, "d", 0, S)
    await leased.claim_event(EventId("e1"), BODY, settled=False)
    got = await way(leased)(0, EventId("e1"), BODY, "p1", 3600, begin=begin)
    assert got.claim is Claim.PENDING and got.enqueued is not None
    started = got.enqueued.started
    assert started is not None
    assert (started.ordinal, started.claim, started.attempts) == (1, MessageClaim.MINE, 1)
    again = await way(leased)(0, EventId("e1"), BODY, "p1", 3600, begin=begin)
    assert again == Admitted(Claim.PENDING, None)
    assert await _stream(leased) == [("e1", True)]
    entry_id = got.enqueued.entry.entry_id
    assert await leased.redis.hgetall(leased.keys.attempts(0)) == {entry_id: "1"}  # type: ignore[misc]


async def test_on_a_single_redis_the_claim_and_the_enqueue_are_one_step(
    store: RedisStore,
) -> None:
    """One round trip on the door's hot path; on a Cluster (two slots) the two steps."""
    sent: list[str] = []
    run = store._run

    async def counted(script: str, *args: object, **kwargs: object) -> object:
        sent.append(script)
        return await run(script, *args, **kwargs)  # type: ignore[arg-type]

    store._run = counted  # type: ignore[method-assign]
    await store.admit_event(0, EventId("e1"), BODY, "p1", 3600)
    one_server = store.line is not None
    assert sent == (["admit_event"] if one_server else ["claim_event", "enqueue_event"])


async def test_an_enqueue_refused_as_too_late_is_a_stale_claim_not_a_duplicate(
    store: RedisStore,
) -> None:
    """Within one script the enqueue cannot come too late; were it ever to, the door must answer
    503 (8x8 retries), not a duplicate's 200 for an event never appended."""
    if store.line is None:
        pytest.skip("a Cluster runs the two steps (enqueue_event raises it itself)")

    async def too_late(*_args: object, **_kwargs: object) -> list[object]:
        return [b"new", 0, -1]

    store._run = too_late  # type: ignore[method-assign,assignment]
    with pytest.raises(StaleClaim):
        await store.admit_event(0, EventId("e1"), BODY, "p1", 3600)


async def test_a_claim_in_the_form_before_is_honoured_by_the_one_step(store: RedisStore) -> None:
    """A claim an earlier version wrote as a key of its own (`Keys.event_claim`, single Redis
    only) is judged as the hashes' claims are: its own body pending goes in, another body is
    refused, a delivered one is a duplicate."""
    if store.line is None:
        pytest.skip("the form before is honoured on a single Redis only")
    await store.redis.set(store.keys.event_claim(EventId("e1")), "p:" + BODY, ex=3600)
    await store.redis.set(store.keys.event_claim(EventId("e2")), "d:" + BODY, ex=3600)
    forged = await store.admit_event(0, EventId("e1"), FORGED, "forged", 3600)
    assert forged == Admitted(Claim.CONFLICT, None)
    pending = await store.admit_event(0, EventId("e1"), BODY, "p1", 3600)
    assert pending.claim is Claim.PENDING and pending.enqueued is not None
    assert await store.admit_event(0, EventId("e2"), BODY, "p2", 3600) == Admitted(Claim.DONE, None)
    assert await _stream(store) == [("e1", True)]


async def test_an_event_the_one_step_could_not_append_is_not_claimed(store: RedisStore) -> None:
    """Redis does not roll back a script that fails halfway: the one step appends before it
    writes the claim, so an event it failed to append is new to 8x8's retry, not a duplicate
    answered for an event never appended (here the append fails on a key of the wrong type)."""
    if store.line is None:
        pytest.skip("a Cluster claims (pending) before it enqueues, in two steps")
    await store.redis.set(store.keys.stream(0), "not a stream")
    with pytest.raises(ResponseError):
        await store.admit_event(0, EventId("e1"), BODY, "p1", 3600)
    await store.redis.delete(store.keys.stream(0))
    again = await store.admit_event(0, EventId("e1"), BODY, "p1", 3600)
    assert again.claim is Claim.NEW and again.enqueued is not None
