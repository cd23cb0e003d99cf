"""Agent message identities in the store: taken before the push, recorded with the ack."""

from __future__ import annotations

import fakeredis
import pytest
import redis.exceptions

from bridge.errors import StaleClaim
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import RedisStore, StreamEntry
from bridge.store.base import (
    Begin,
    MessageClaim,
    MessageState,
    RunAck,
    RunClaim,
    RunMessage,
)
from bridge.store.keys import MAPPING_TTL_MS

from .conftest import OTHER, OWNER

C = ConversationId("conv-1")
H = "ab" * 16  # a text digest


async def enqueue(store: RedisStore, *ids: str) -> list[StreamEntry]:
    for event_id in ids:
        assert await store.enqueue_event(0, EventId(event_id), f"payload-{event_id}", 3600)
    return await store.read_events(0, 100)


async def test_webhook_events_take_the_lowest_free_ordinal_and_keep_it(leased: RedisStore) -> None:
    assert await leased.claim_message(0, C, OWNER, H, EventId("e1"), 0) == (1, MessageClaim.MINE)
    assert await leased.claim_message(0, C, OWNER, H, EventId("e2"), 0) == (2, MessageClaim.MINE)
    # a retry, a take-over or a replay of e1: the same ordinal, still its own
    assert await leased.claim_message(0, C, OWNER, H, EventId("e1"), 0) == (1, MessageClaim.MINE)
    assert await leased.message_state(0, C, H, 1) is MessageState.OWNED
    assert await leased.message_state(0, C, H, 3) is MessageState.UNKNOWN
    other_text = "cd" * 16
    assert await leased.claim_message(0, C, OWNER, other_text, EventId("e3"), 0) == (
        1,
        MessageClaim.MINE,
    )


async def test_a_listed_message_owned_or_delivered_by_another_entry_is_not_its_own(
    leased: RedisStore,
) -> None:
    [a] = await enqueue(leased, "a")
    assert await leased.claim_message(0, C, OWNER, H, a.event_id, 0) == (1, MessageClaim.MINE)
    listed = EventId(f"msg:{H}:1")
    assert await leased.claim_message(0, C, OWNER, H, listed, 1) == (1, MessageClaim.OTHER)
    assert await leased.ack_message(0, a.entry_id, OWNER, C, H, 1)
    assert await leased.message_state(0, C, H, 1) is MessageState.DELIVERED
    assert await leased.claim_message(0, C, OWNER, H, listed, 1) == (1, MessageClaim.DELIVERED)
    # a listed second occurrence is free: it takes it
    second = EventId(f"msg:{H}:2")
    assert await leased.claim_message(0, C, OWNER, H, second, 2) == (2, MessageClaim.MINE)
    # and a webhook event for the same text now takes the third
    assert await leased.claim_message(0, C, OWNER, H, EventId("late"), 0) == (3, MessageClaim.MINE)


async def test_the_ack_removes_the_entry_and_records_delivery_in_one_fenced_step(
    leased: RedisStore,
) -> None:
    a, b = await enqueue(leased, "a", "b")
    await leased.note_attempt(0, a.entry_id)
    assert not await leased.ack_message(0, a.entry_id, OTHER, C, H, 1)
    assert await leased.read_events(0, 10) == [a, b]
    assert await leased.message_state(0, C, H, 1) is MessageState.UNKNOWN
    assert await leased.ack_message(0, a.entry_id, OWNER, C, H, 1)
    assert await leased.read_events(0, 10) == [b]
    assert await leased.message_state(0, C, H, 1) is MessageState.DELIVERED
    assert not await leased.redis.hexists(leased.keys.attempts(0), a.entry_id)


async def test_claims_are_fenced_by_the_partition_lease(leased: RedisStore) -> None:
    assert await leased.claim_message(0, C, OTHER, H, EventId("e1"), 0) == (0, MessageClaim.LOST)
    assert await leased.message_state(0, C, H, 1) is MessageState.UNKNOWN


async def test_unholding_a_message_records_it(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    assert await leased.hold_event(0, C, a, 10**13, OWNER)
    assert not await leased.unhold_message(0, C, a.entry_id, OTHER, H, 1)
    assert await leased.unhold_message(0, C, a.entry_id, OWNER, H, 1)
    assert await leased.held_events(0, C) == []
    assert await leased.held_conversations(0) == {}
    assert await leased.message_state(0, C, H, 1) is MessageState.DELIVERED


async def test_the_record_expires_with_the_conversation_link(leased: RedisStore) -> None:
    await leased.claim_message(0, C, OWNER, H, EventId("e1"), 0)
    ttl = await leased.redis.pttl(leased.keys.delivered(0, C))
    assert MAPPING_TTL_MS - 60_000 < ttl <= MAPPING_TTL_MS


async def test_claim_and_begin_claims_counts_the_attempt_and_reads_the_record(
    leased: RedisStore,
) -> None:
    s = SenderId("ada")
    assert await leased.save_handoff(s, {"state": "live"}, 0)
    a, b = await enqueue(leased, "a", "b")
    k, claim, attempts, record = await leased.claim_and_begin(
        0, C, OWNER, H, a.event_id, 0, a.entry_id, s
    )
    assert (k, claim, attempts) == (1, MessageClaim.MINE, 1)
    assert record is not None and record.fields["state"] == "live"
    # a retry after a crash: the same ordinal, the attempt counted on
    assert (await leased.claim_and_begin(0, C, OWNER, H, a.event_id, 0, a.entry_id, s))[:3] == (
        1, MessageClaim.MINE, 2,
    )  # fmt: skip
    # another entry's message is not counted as an attempt of this one
    listed = EventId(f"msg:{H}:1")
    assert (await leased.claim_and_begin(0, C, OWNER, H, listed, 1, b.entry_id, s))[:3] == (
        1, MessageClaim.OTHER, 0,
    )  # fmt: skip
    assert not await leased.redis.hexists(leased.keys.attempts(0), b.entry_id)
    assert await leased.ack_message(0, a.entry_id, OWNER, C, H, 1)
    assert (await leased.claim_and_begin(0, C, OWNER, H, listed, 1, b.entry_id, s))[:3] == (
        1, MessageClaim.DELIVERED, 0,
    )  # fmt: skip


async def test_claim_and_begin_is_fenced_by_the_partition_lease(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    k, claim, attempts, _ = await leased.claim_and_begin(
        0, C, OTHER, H, a.event_id, 0, a.entry_id, SenderId("ada")
    )
    assert (k, claim, attempts) == (0, MessageClaim.LOST, 0)
    assert await leased.message_state(0, C, H, 1) is MessageState.UNKNOWN
    assert not await leased.redis.hexists(leased.keys.attempts(0), a.entry_id)


async def test_claim_and_begin_loads_its_script_on_a_redis_that_lacks_it() -> None:
    # A fresh server knows no script: the pipelined EVALSHA is refused and must be retried.
    server = fakeredis.FakeServer(version=(7,))
    store = RedisStore(fakeredis.FakeAsyncRedis(server=server, decode_responses=True))
    await store.acquire_partition(0, OWNER, 60_000)
    [a] = await enqueue(store, "a")
    got = await store.claim_and_begin(0, C, OWNER, H, a.event_id, 0, a.entry_id, SenderId("ada"))
    assert got == (1, MessageClaim.MINE, 1, None)
    await store.close()


async def test_an_enqueue_takes_the_relays_first_step_for_the_entry_it_appends(
    leased: RedisStore,
) -> None:
    s = SenderId("ada")
    assert await leased.save_handoff(s, {"state": "live"}, 0)
    got = await leased.enqueue_event(0, EventId("a"), "p", 3600, begin=Begin(OWNER, C, H, 0, s))
    assert got is not None and got.started is not None
    started = got.started
    assert (started.ordinal, started.claim, started.attempts) == (1, MessageClaim.MINE, 1)
    assert started.record is not None and started.record.fields["state"] == "live"
    [a] = await leased.read_events(0, 10)
    assert a == got.entry  # appended as a plain enqueue appends it
    assert await leased.message_state(0, C, H, 1) is MessageState.OWNED
    # the relay's own step for the same entry (it was worked again): the same claim, the
    # attempt counted on, so the delivery looks in the tracker before pushing
    assert (await leased.claim_and_begin(0, C, OWNER, H, a.event_id, 0, a.entry_id, s))[:3] == (
        1, MessageClaim.MINE, 2,
    )  # fmt: skip


async def test_an_enqueue_fenced_out_of_the_step_still_appends(leased: RedisStore) -> None:
    got = await leased.enqueue_event(
        0, EventId("a"), "p", 3600, begin=Begin(OTHER, C, H, 0, SenderId("ada"))
    )
    assert got is not None and got.started is not None
    assert (got.started.ordinal, got.started.claim, got.started.attempts) == (
        0, MessageClaim.LOST, 0,
    )  # fmt: skip
    assert [e.event_id for e in await leased.read_events(0, 10)] == ["a"]
    assert await leased.message_state(0, C, H, 1) is MessageState.UNKNOWN
    assert not await leased.redis.exists(leased.keys.attempts(0))


async def test_an_enqueue_takes_the_step_only_right_after_the_consumers_frontier(
    leased: RedisStore,
) -> None:
    """Identities are claimed in stream order: with an entry before it the consumer has not
    read (recovery's, another process's), the step is left to the consumer, which claims that
    entry's first."""
    s = SenderId("ada")
    [a] = await enqueue(leased, "a")
    for frontier in ("", f"{int(a.entry_id.split('-')[0]) - 1}-0"):  # none; before a
        b = await leased.enqueue_event(
            0, EventId(f"b{frontier}"), "p", 3600, begin=Begin(OWNER, C, H, 0, s, frontier)
        )
        assert b is not None and b.started is None  # appended, no step
    assert await leased.message_state(0, C, H, 1) is MessageState.UNKNOWN
    assert not await leased.redis.exists(leased.keys.attempts(0))
    last = (await leased.read_events(0, 10))[-1]
    c = await leased.enqueue_event(
        0, EventId("c"), "p", 3600, begin=Begin(OWNER, C, H, 0, s, last.entry_id)
    )
    assert c is not None and c.started is not None  # right after the frontier: taken
    assert c.started.claim is MessageClaim.MINE


async def test_on_a_cluster_a_failed_record_read_fails_not_the_enqueue(
    leased: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record lives on another node: the entry is appended and its step taken all the
    same, the record said unread (the delivery reads it)."""
    if leased.line is not None:
        pytest.skip("one connection: the read cannot fail without the step")

    async def unreachable(*_args: object) -> None:
        raise redis.exceptions.ConnectionError("the record's node is down")

    monkeypatch.setattr(leased.redis, "hgetall", unreachable)
    got = await leased.enqueue_event(
        0, EventId("a"), "p", 3600, begin=Begin(OWNER, C, H, 0, SenderId("ada"))
    )
    assert got is not None and got.started is not None
    assert got.started.claim is MessageClaim.MINE and not got.started.record_read
    assert [e.event_id for e in await leased.read_events(0, 10)] == ["a"]


async def test_an_enqueue_that_appends_nothing_takes_no_step(leased: RedisStore) -> None:
    begin = Begin(OWNER, C, H, 0, SenderId("ada"))
    assert await leased.enqueue_event(0, EventId("a"), "p", 3600)
    # in the stream already: nothing appended, nothing claimed
    assert await leased.enqueue_event(0, EventId("a"), "p", 3600, begin=begin) is None
    # too long after its claim: refused, nothing claimed
    with pytest.raises(StaleClaim):
        await leased.enqueue_event(0, EventId("b"), "p", 3600, claimed_ms=1, begin=begin)
    assert await leased.message_state(0, C, H, 1) is MessageState.UNKNOWN
    assert not await leased.redis.exists(leased.keys.attempts(0))


def run_of(*entries: tuple[StreamEntry, int]) -> list[RunMessage]:
    """A run's messages, all of the text H: (entry, ordinal), 0 for a webhook event's."""
    return [RunMessage(e.entry_id, e.event_id, H, k) for e, k in entries]


async def test_a_run_claims_in_order_counts_first_attempts_and_reads_the_record(
    leased: RedisStore,
) -> None:
    s = SenderId("ada")
    assert await leased.save_handoff(s, {"state": "live"}, 0)
    a, b, c = await enqueue(leased, "a", "b", f"msg:{H}:1")
    run = run_of((a, 0), (b, 0), (c, 1))
    claims, record = await leased.claim_and_begin_run(0, C, OWNER, run, s)
    # each claim sees the ones before it: the listed twin of the first is another entry's
    assert claims == [
        RunClaim(1, MessageClaim.MINE, 1),
        RunClaim(2, MessageClaim.MINE, 1),
        RunClaim(1, MessageClaim.OTHER, 0),
    ]
    assert record is not None and record.fields["state"] == "live"
    assert not await leased.redis.hexists(leased.keys.attempts(0), c.entry_id)
    # the same run again (a take-over): the same ordinals, the attempts counted on
    claims, _ = await leased.claim_and_begin_run(0, C, OWNER, run, s)
    assert [(x.ordinal, x.claim, x.attempts) for x in claims][:2] == [
        (1, MessageClaim.MINE, 2), (2, MessageClaim.MINE, 2),
    ]  # fmt: skip
    # what a message claimed in a run is, one at a time: the same
    assert (await leased.claim_and_begin(0, C, OWNER, H, b.event_id, 0, b.entry_id, s))[:3] == (
        2, MessageClaim.MINE, 3,
    )  # fmt: skip


async def test_a_run_is_fenced_by_the_partition_lease(leased: RedisStore) -> None:
    a, b = await enqueue(leased, "a", "b")
    claims, _ = await leased.claim_and_begin_run(
        0, C, OTHER, run_of((a, 0), (b, 0)), SenderId("ada")
    )
    assert claims == [RunClaim(0, MessageClaim.LOST, 0)] * 2
    assert await leased.message_state(0, C, H, 1) is MessageState.UNKNOWN
    assert await leased.redis.hlen(leased.keys.attempts(0)) == 0


async def test_a_run_is_acknowledged_and_recorded_in_one_fenced_step(leased: RedisStore) -> None:
    a, b, later = await enqueue(leased, "a", "b", "later")
    claims, _ = await leased.claim_and_begin_run(
        0, C, OWNER, run_of((a, 0), (b, 0)), SenderId("ada")
    )
    done = [RunAck(a.entry_id, H, claims[0].ordinal), RunAck(b.entry_id, H, claims[1].ordinal)]
    assert not await leased.ack_messages(0, OTHER, C, done)
    assert await leased.read_events(0, 10) == [a, b, later]
    assert await leased.message_state(0, C, H, 1) is MessageState.OWNED
    assert await leased.ack_messages(0, OWNER, C, done)
    assert await leased.read_events(0, 10) == [later]
    for ordinal in (1, 2):
        assert await leased.message_state(0, C, H, ordinal) is MessageState.DELIVERED
    assert await leased.redis.hlen(leased.keys.attempts(0)) == 0
    ttl = await leased.redis.pttl(leased.keys.delivered(0, C))
    assert MAPPING_TTL_MS - 60_000 < ttl <= MAPPING_TTL_MS


async def test_a_run_loads_its_script_on_a_redis_that_lacks_it() -> None:
    server = fakeredis.FakeServer(version=(7,))
    store = RedisStore(fakeredis.FakeAsyncRedis(server=server, decode_responses=True))
    await store.acquire_partition(0, OWNER, 60_000)
    a, b = await enqueue(store, "a", "b")
    got = await store.claim_and_begin_run(0, C, OWNER, run_of((a, 0), (b, 0)), SenderId("ada"))
    assert got == ([RunClaim(1, MessageClaim.MINE, 1), RunClaim(2, MessageClaim.MINE, 1)], None)
    await store.close()
