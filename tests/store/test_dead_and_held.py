"""Dead letters (from the stream and from hold lists), replay, and held events."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.ids import ConversationId, EventId
from bridge.store import RedisStore, StreamEntry
from bridge.store.redis_store import FINISH_HOLD_S

from .conftest import OTHER, OWNER

TTL_S = 3600
C = ConversationId("conv-early")


async def enqueue(store: RedisStore, *ids: str, partition: int = 0) -> list[StreamEntry]:
    for event_id in ids:
        assert await store.enqueue_event(partition, EventId(event_id), f"payload-{event_id}", TTL_S)
    return await store.read_events(partition, 100)


# --- dead letters ---


async def test_dead_letter_from_stream(leased: RedisStore) -> None:
    a, b = await enqueue(leased, "a", "b")
    await leased.note_attempt(0, a.entry_id)
    assert await leased.dead_letter(0, a, "max_attempts", OWNER)
    assert await leased.read_events(0, 10) == [b]
    [dead] = await leased.list_dead_letters()
    assert (dead.partition, dead.entry, dead.reason) == (0, a, "max_attempts")
    assert not await leased.redis.hexists(leased.keys.attempts(0), a.entry_id)


async def test_dead_letter_by_non_owner_moves_nothing(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    assert not await leased.dead_letter(0, a, "max_age", OTHER)
    assert await leased.read_events(0, 10) == [a]
    assert await leased.list_dead_letters() == []


async def test_dead_letter_twice_records_once(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    assert await leased.dead_letter(0, a, "max_age", OWNER)
    assert await leased.dead_letter(0, a, "max_age", OWNER)
    assert len(await leased.list_dead_letters()) == 1


async def test_dead_letter_from_hold_list(leased: RedisStore) -> None:
    a, b = await enqueue(leased, "a", "b")
    assert await leased.hold_event(0, C, a, 1_000, OWNER)
    assert await leased.hold_event(0, C, b, 1_000, OWNER)
    assert await leased.dead_letter(0, a, "unknown_conversation", OWNER)
    assert await leased.held_events(0, C) == [b]
    assert await leased.held_conversations(0) == {C: 1_000}
    assert await leased.dead_letter(0, b, "unknown_conversation", OWNER)
    assert await leased.held_events(0, C) == []
    assert await leased.held_conversations(0) == {}  # left with its last entry
    dead = await leased.list_dead_letters()
    assert [(d.entry, d.reason) for d in dead] == [
        (a, "unknown_conversation"),
        (b, "unknown_conversation"),
    ]
    assert await leased.redis.hlen(leased.keys.held_index(0)) == 0


async def test_dead_letter_from_hold_by_non_owner_moves_nothing(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    assert await leased.hold_event(0, C, a, 1_000, OWNER)
    assert not await leased.dead_letter(0, a, "unknown_conversation", OTHER)
    assert await leased.held_events(0, C) == [a]
    assert await leased.list_dead_letters() == []


async def test_list_dead_letters_across_partitions_with_limit(leased: RedisStore) -> None:
    for p in (0, 2):
        for event_id in (f"p{p}-1", f"p{p}-2"):
            [entry] = await enqueue(leased, event_id, partition=p)
            assert await leased.dead_letter(p, entry, "max_age", OWNER)
    dead = await leased.list_dead_letters()
    assert [(d.partition, d.entry.event_id) for d in dead] == [
        (0, "p0-1"),
        (0, "p0-2"),
        (2, "p2-1"),
        (2, "p2-2"),
    ]
    assert [d.entry.event_id for d in await leased.list_dead_letters(count=3)] == [
        "p0-1",
        "p0-2",
        "p2-1",
    ]


async def test_replay_puts_the_entry_back_at_the_end(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    assert await leased.dead_letter(0, a, "max_age", OWNER)
    await enqueue(leased, "b")
    [dead] = await leased.list_dead_letters()
    assert await leased.replay_dead_letter(0, dead.dead_id)
    entries = await leased.read_events(0, 10)
    assert [(e.event_id, e.payload) for e in entries] == [("b", "payload-b"), ("a", "payload-a")]
    assert entries[1].entry_id != a.entry_id  # a new place in the stream
    # Counted as attempted: its push may have landed, so the relay checks the tracker first.
    assert await leased.note_attempt(0, entries[1].entry_id) == 2
    assert await leased.list_dead_letters() == []
    assert not await leased.replay_dead_letter(0, dead.dead_id)  # gone now


@pytest.mark.parametrize("dead_id", ["0-1", "99999999999999-0", "not-an-id", ""])
async def test_replay_of_unknown_dead_letter_is_false(leased: RedisStore, dead_id: str) -> None:
    assert not await leased.replay_dead_letter(1, dead_id)
    assert await leased.read_events(1, 10) == []


# --- held events ---


async def test_hold_moves_entries_in_order_and_first_deadline_wins(leased: RedisStore) -> None:
    a, b, other = await enqueue(leased, "a", "b", "c")
    assert await leased.hold_event(0, C, a, 5_000, OWNER)
    assert await leased.hold_event(0, C, b, 9_000, OWNER)  # later entry: deadline kept
    assert await leased.read_events(0, 10) == [other]
    assert await leased.held_events(0, C) == [a, b]
    assert await leased.held_conversations(0) == {C: 5_000}


async def test_hold_by_non_owner_is_refused(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    assert not await leased.hold_event(0, C, a, 5_000, OTHER)
    assert await leased.read_events(0, 10) == [a]
    assert await leased.held_conversations(0) == {}


async def test_hold_twice_holds_once(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    assert await leased.hold_event(0, C, a, 5_000, OWNER)
    assert await leased.hold_event(0, C, a, 5_000, OWNER)
    assert await leased.held_events(0, C) == [a]


async def test_held_conversations_per_partition(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a", partition=1)
    [b] = await enqueue(leased, "b", partition=2)
    other = ConversationId("conv-other")
    assert await leased.hold_event(1, C, a, 1_000, OWNER)
    assert await leased.hold_event(2, other, b, 2_000, OWNER)
    assert await leased.held_conversations(1) == {C: 1_000}
    assert await leased.held_conversations(2) == {other: 2_000}
    assert await leased.held_events(1, other) == []


async def test_unhold_drops_one_and_the_last_leaves_the_set(leased: RedisStore) -> None:
    a, b = await enqueue(leased, "a", "b")
    await leased.hold_event(0, C, a, 5_000, OWNER)
    await leased.hold_event(0, C, b, 5_000, OWNER)
    await leased.note_attempt(0, a.entry_id)
    assert await leased.unhold_event(0, C, a.entry_id, OWNER)
    assert await leased.held_events(0, C) == [b]
    assert await leased.held_conversations(0) == {C: 5_000}
    assert not await leased.redis.hexists(leased.keys.attempts(0), a.entry_id)
    assert await leased.unhold_event(0, C, b.entry_id, OWNER)
    assert await leased.held_conversations(0) == {}
    assert await leased.redis.exists(leased.keys.hold(0, C)) == 0


async def test_unhold_by_non_owner_is_refused(leased: RedisStore) -> None:
    [a] = await enqueue(leased, "a")
    await leased.hold_event(0, C, a, 5_000, OWNER)
    assert not await leased.unhold_event(0, C, a.entry_id, OTHER)
    assert await leased.held_events(0, C) == [a]


async def test_new_hold_after_release_sets_a_new_deadline(leased: RedisStore) -> None:
    a, b = await enqueue(leased, "a", "b")
    await leased.hold_event(0, C, a, 5_000, OWNER)
    await leased.unhold_event(0, C, a.entry_id, OWNER)
    await leased.hold_event(0, C, b, 8_000, OWNER)
    assert await leased.held_conversations(0) == {C: 8_000}


async def test_awkward_payloads_survive_holding(leased: RedisStore) -> None:
    payload = '{"text": "quote \\" and \\n newline", "emoji": "\U0001f600", "x": "]["}'
    assert await leased.enqueue_event(0, EventId('id "with" quotes'), payload, TTL_S)
    [entry] = await leased.read_events(0, 1)
    assert await leased.hold_event(0, C, entry, 5_000, OWNER)
    assert await leased.held_events(0, C) == [entry]
    assert await leased.unhold_event(0, C, entry.entry_id, OWNER)
    assert await leased.held_events(0, C) == []


async def test_similar_entry_ids_are_not_confused(leased: RedisStore) -> None:
    # "<ms>-1" is a string prefix of "<ms>-10": unhold must match the whole id.
    ms = 1_700_000_000_000
    stream = leased.keys.stream(0)
    for seq in (1, 10):
        await leased.redis.xadd(stream, {"eid": f"e{seq}", "ev": "p"}, id=f"{ms}-{seq}")
    one, ten = await leased.read_events(0, 10)
    await leased.hold_event(0, C, one, 5_000, OWNER)
    await leased.hold_event(0, C, ten, 5_000, OWNER)
    assert await leased.unhold_event(0, C, one.entry_id, OWNER)
    assert await leased.held_events(0, C) == [ten]


async def test_an_ack_may_wait_for_company_on_the_line_and_an_unhold_does_not(
    leased: RedisStore,
) -> None:
    """An ack's reply waits on nothing but its lane's next entry; held entries are released
    one after another, each after the last's unhold, so an unhold held would add up."""
    if leased.line is None:
        pytest.skip("a Cluster has no line")
    holds: list[float] = []
    batch = leased.line.batch

    async def noting(commands: Any, *, hold_s: float = 0.0) -> Any:
        holds.append(hold_s)
        return await batch(commands, hold_s=hold_s)

    a, b = await enqueue(leased, "a", "b")
    await leased.hold_event(0, C, a, 5_000, OWNER)
    leased.line.batch = noting  # type: ignore[method-assign]
    assert await leased.unhold_event(0, C, a.entry_id, OWNER)
    assert holds == [0.0]
    assert await leased.ack_event(0, b.entry_id, OWNER)
    assert holds == [0.0, FINISH_HOLD_S] and FINISH_HOLD_S > 0
