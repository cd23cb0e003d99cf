"""Timers in the store: armed per partition, one member per kind and handoff (arming it again
moves it), fired by the lease holder only, once, into the partition stream behind the events
accepted before them, as entries that carry the arming they were. Timers armed by the earlier
version (the timer's JSON as the member) still fire and read back as before."""

from __future__ import annotations

import json

from bridge.handoff import DisarmTimer, TimerChange, TimerFired, TimerKind
from bridge.ids import ConversationId, EventId
from bridge.store import RedisStore
from bridge.store.base import TIMER_EVENT_PREFIX, RunAck, partition_of
from bridge.store.keys import TIMER_SHARDS, timer_shard
from bridge.store.timers import fired_timer, timer_member

from .conftest import OTHER, OWNER

C = ConversationId("conv-1")
SINCE = 1_700_000_000_000  # real epoch ms: the due times are 13-digit scores
DUE = SINCE + 600_000
K = TimerKind


def timer(
    kind: TimerKind = K.USER_SILENCE, due: int = DUE, conversation: str = C, since: int = SINCE
) -> TimerFired:
    return TimerFired(kind, ConversationId(conversation), since, due)


async def fired(store: RedisStore, partition: int) -> list[TimerFired]:
    entries = await store.read_events(partition, 100)
    return [fired_timer(e.payload) for e in entries if e.event_id.startswith(TIMER_EVENT_PREFIX)]


async def armed(store: RedisStore, partition: int) -> int:
    return sum([await store.redis.zcard(key) for key in store.keys.timer_sets(partition)])


def shard_key(store: RedisStore, partition: int, conversation: str = C) -> str:
    return store.keys.timers(partition, timer_shard(ConversationId(conversation)))


async def test_a_due_timer_fires_once_into_the_stream_after_earlier_events(
    leased: RedisStore,
) -> None:
    await leased.enqueue_event(2, EventId("join"), '{"kind":"agent_joined"}', 60)
    await leased.arm_timer(2, timer(K.USER_SILENCE, DUE))
    await leased.arm_timer(2, timer(K.AGENT_SILENCE, DUE + 1_000))
    assert await leased.fire_timers(2, DUE - 1, OWNER) == 0  # not due yet
    assert await leased.fire_timers(2, DUE, OWNER) == 1
    assert await leased.fire_timers(2, DUE + 500, OWNER) == 0  # fired already: never twice
    entries = await leased.read_events(2, 10)
    # The stored form, literally: the next version must read what this one wrote.
    assert [(e.event_id, e.payload) for e in entries] == [
        (EventId("join"), '{"kind":"agent_joined"}'),
        (EventId(f"timer:{DUE}|u|{SINCE}"), f"{DUE}|u|{SINCE}|conv-1"),
    ]
    assert fired_timer(entries[1].payload) == timer(K.USER_SILENCE, DUE)
    assert await leased.fire_timers(2, DUE + 5_000, OWNER) == 1
    assert (await fired(leased, 2))[-1] == timer(K.AGENT_SILENCE, DUE + 1_000)


async def test_only_the_lease_holder_fires(leased: RedisStore) -> None:
    await leased.arm_timer(1, timer())
    assert await leased.fire_timers(1, DUE, OTHER) == 0
    assert await leased.read_events(1, 10) == []
    assert await leased.fire_timers(1, DUE, OWNER) == 1


async def test_arming_the_same_kind_of_the_same_handoff_again_moves_it(
    leased: RedisStore,
) -> None:
    await leased.arm_timer(0, timer(due=DUE))
    await leased.arm_timer(0, timer(due=DUE + 9_000))
    assert await armed(leased, 0) == 1  # moved in place, not a second member
    assert await leased.fire_timers(0, DUE + 5_000, OWNER) == 0
    assert await leased.fire_timers(0, DUE + 9_000, OWNER) == 1
    assert await fired(leased, 0) == [timer(due=DUE + 9_000)]  # the arming it was moved to


async def test_arming_again_may_move_it_earlier(leased: RedisStore) -> None:
    await leased.arm_timer(0, timer(due=DUE + 9_000))
    await leased.arm_timer(0, timer(due=DUE))
    assert await leased.fire_timers(0, DUE, OWNER) == 1
    assert await fired(leased, 0) == [timer(due=DUE)]
    assert await armed(leased, 0) == 0


async def test_each_kind_of_each_handoff_is_its_own_timer(leased: RedisStore) -> None:
    timers = [
        timer(K.USER_SILENCE, DUE),
        timer(K.AGENT_SILENCE, DUE + 1),
        timer(K.USER_SILENCE, DUE + 2, since=SINCE - 1),  # an earlier handoff's
        timer(K.USER_SILENCE, DUE + 3, conversation="conv-2"),
        timer(K.QUEUE_TIMEOUT, DUE + 4),
        timer(K.QUEUE_REMINDER, DUE + 5),
    ]
    for t in timers:
        await leased.arm_timer(3, t)
    assert await armed(leased, 3) == len(timers)
    assert await leased.fire_timers(3, DUE + 10, OWNER) == len(timers)
    assert await fired(leased, 3) == timers  # in due order


async def test_firing_is_bounded_per_call(leased: RedisStore) -> None:
    timers = [timer(due=DUE + i, conversation=f"c{i}") for i in range(5)]
    for t in timers:
        await leased.arm_timer(3, t)
    assert await leased.fire_timers(3, DUE + 100, OWNER, limit=3) == 3
    assert await leased.fire_timers(3, DUE + 100, OWNER, limit=3) == 2
    assert await fired(leased, 3) == timers


async def test_a_partition_s_timers_fire_in_due_order_whichever_shard_holds_them(
    leased: RedisStore,
) -> None:
    """Each shard gives its earliest; the merge fires the earliest of all, `limit` at most."""
    conversations = [f"conv-{n}" for n in range(40)]
    assert len({timer_shard(ConversationId(c)) for c in conversations}) > TIMER_SHARDS // 2
    # Due times interleave the shards: conversation n is due at DUE + (n * 7919) % 40.
    timers = [timer(due=DUE + (n * 7919) % 40, conversation=c) for n, c in enumerate(conversations)]
    for t in timers:
        await leased.arm_timer(3, t)
    ordered = sorted(timers, key=lambda t: t.due_ms)
    assert await leased.fire_timers(3, DUE + 100, OWNER, limit=7) == 7
    assert await fired(leased, 3) == ordered[:7]
    assert await leased.fire_timers(3, DUE + 20, OWNER) == 14  # due by then: DUE+0..DUE+20
    assert await leased.fire_timers(3, DUE + 100, OWNER) == 19
    assert await fired(leased, 3) == ordered
    assert await armed(leased, 3) == 0


async def test_one_shard_s_timers_may_fill_a_firing_ahead_of_the_other_shards(
    leased: RedisStore,
) -> None:
    """The earliest `limit` due may all be in one shard: the shard's next due comes up as its
    head each time one of its timers fires."""
    crowded = [
        timer(kind, DUE + n, conversation="crowded", since=SINCE - n // 4)
        for n, kind in enumerate(
            [K.QUEUE_TIMEOUT, K.QUEUE_REMINDER, K.AGENT_SILENCE, K.USER_SILENCE] * 2
        )
    ]
    later = [timer(due=DUE + 100 + n, conversation=f"later-{n}") for n in range(20)]
    assert {timer_shard(ConversationId(t.conversation_id)) for t in later} - {
        timer_shard(ConversationId("crowded"))
    }
    for t in [*later, *crowded]:
        await leased.arm_timer(3, t)
    assert await leased.fire_timers(3, DUE + 200, OWNER, limit=6) == 6
    assert await fired(leased, 3) == crowded[:6]


async def test_timers_due_at_once_in_two_shards_fire_in_member_order(leased: RedisStore) -> None:
    """As one set ordered them: by due time, then by member (here the later shard's first)."""
    a, b = "tie-2", "tie-3"
    assert timer_shard(ConversationId(a)) > timer_shard(ConversationId(b))
    first, second = timer(due=DUE, conversation=a), timer(due=DUE, conversation=b)
    assert timer_member(first) < timer_member(second)
    for t in (second, first):
        await leased.arm_timer(3, t)
    assert await leased.fire_timers(3, DUE, OWNER, limit=1) == 1
    assert await fired(leased, 3) == [first]
    assert await leased.fire_timers(3, DUE, OWNER, limit=1) == 1
    assert await fired(leased, 3) == [first, second]


def test_a_partition_s_conversations_spread_over_its_timer_shards() -> None:
    """The shard comes from other bits of the hash than the partition: with 16 partitions,
    the conversations of one partition fill every shard, not one."""
    ids = [ConversationId(f"9f1c-{n}") for n in range(4_000)]
    mine = [c for c in ids if partition_of(c, 16) == 5]
    per_shard = [sum(timer_shard(c) == s for c in mine) for s in range(TIMER_SHARDS)]
    assert min(per_shard) > len(mine) / TIMER_SHARDS / 2, per_shard


ODD_CONVERSATIONS = [
    "a|b",
    "|",
    "u|1700000000000|c",  # looks like a member itself
    "{not json",
    "Ünïcødé 会话 🙂",
    " spaced out ",
    "line\nbreak",
    "x" * 300,
]


async def test_any_conversation_id_fires_and_reads_back(leased: RedisStore) -> None:
    timers = [timer(due=DUE + i, conversation=c) for i, c in enumerate(ODD_CONVERSATIONS)]
    for t in timers:
        await leased.arm_timer(1, t)
    assert await leased.fire_timers(1, DUE + 100, OWNER) == len(timers)
    assert await fired(leased, 1) == timers


def legacy_member(t: TimerFired) -> str:
    """A timer as the earlier version stored it (its `TimerFired.to_json`)."""
    fields = {
        "timer": t.kind.value,
        "conversation_id": t.conversation_id,
        "since_ms": t.since_ms,
        "due_ms": t.due_ms,
    }
    return json.dumps(fields, separators=(",", ":"))


async def test_a_timer_armed_by_the_earlier_version_fires_and_reads_as_before(
    leased: RedisStore,
) -> None:
    old = timer(K.AGENT_SILENCE, DUE, conversation="a|b 🙂")
    member = legacy_member(old)
    await leased.redis.zadd(leased.keys.timers_unsharded(2), {member: DUE})
    await leased.arm_timer(2, timer(K.AGENT_SILENCE, DUE + 1_000, conversation="a|b 🙂"))
    assert await leased.fire_timers(2, DUE + 1_000, OWNER) == 2
    entries = await leased.read_events(2, 10)
    # The earlier version's entry, unchanged: its event id and its payload.
    assert (entries[0].event_id, entries[0].payload) == (f"timer:{member}", member)
    assert [fired_timer(e.payload) for e in entries] == [
        old,
        timer(K.AGENT_SILENCE, DUE + 1_000, conversation="a|b 🙂"),
    ]


async def test_timers_the_earlier_version_kept_in_one_set_fire_merged_with_the_shards(
    leased: RedisStore,
) -> None:
    """Its one set per partition drains as its timers come due, in due order with the
    shards' timers; nothing writes to it any more."""
    earlier = [timer(due=DUE + 2 * n, conversation=f"old-{n}") for n in range(3)]
    unsharded = leased.keys.timers_unsharded(1)
    await leased.redis.zadd(unsharded, {timer_member(t): t.due_ms for t in earlier})
    now = [timer(due=DUE + 2 * n + 1, conversation=f"new-{n}") for n in range(3)]
    for t in now:
        await leased.arm_timer(1, t)
    assert await leased.redis.zcard(unsharded) == 3  # arming writes the shards only
    assert await leased.fire_timers(1, DUE + 3, OWNER) == 4
    assert await leased.fire_timers(1, DUE + 10, OWNER) == 2
    assert await fired(leased, 1) == sorted([*earlier, *now], key=lambda t: t.due_ms)
    assert not await leased.redis.exists(unsharded)


async def test_the_step_that_finishes_an_entry_arms_the_timers_its_delivery_armed(
    leased: RedisStore,
) -> None:
    """Ack (claimed or not) and unhold arm the delivery's timers in their round trip."""
    p = partition_of(C, leased.partitions)
    claimed = await leased.claim_event(EventId("e-1"), "h", settled=False)
    await leased.enqueue_event(p, EventId("e-1"), "x", 60, claimed.at_ms)
    await leased.enqueue_event(p, EventId("e-2"), "y", 60)
    first, second = await leased.read_events(p, 10)
    assert await leased.acquire_partition(p, OWNER, 60_000)
    assert await leased.ack_event(
        p, first.entry_id, OWNER, first.event_id, [timer(due=DUE)], claimed=first.claimed
    )
    assert await leased.redis.zscore(shard_key(leased, p), timer_member(timer())) == DUE
    assert await leased.hold_event(p, C, second, DUE, OWNER)
    later = timer(K.AGENT_SILENCE, due=DUE + 5)
    assert await leased.unhold_event(p, C, second.entry_id, OWNER, [timer(due=DUE + 1), later])
    assert await leased.redis.zscore(shard_key(leased, p), timer_member(timer())) == DUE + 1
    assert await leased.redis.zscore(shard_key(leased, p), timer_member(later)) == DUE + 5
    assert await leased.read_events(p, 10) == []


async def test_a_runs_ack_stores_its_steps_timer_changes(leased: RedisStore) -> None:
    """A run's one ack (several entries) stores what its steps did to the timers, in their
    round trip: each member's last change."""
    p = partition_of(C, leased.partitions)
    for n in range(2):
        await leased.enqueue_event(p, EventId(f"e-{n}"), "x", 60)
    first, second = await leased.read_events(p, 10)
    assert await leased.acquire_partition(p, OWNER, 60_000)
    await leased.arm_timer(p, timer(K.QUEUE_REMINDER, DUE))
    done = [RunAck(first.entry_id, "d", 1), RunAck(second.entry_id, "d", 2)]
    changes: list[TimerChange] = [
        timer(K.USER_SILENCE, DUE + 1),
        DisarmTimer(timer(K.QUEUE_REMINDER, DUE)),
        timer(K.USER_SILENCE, DUE + 2),
    ]
    assert await leased.ack_messages(p, OWNER, C, done, changes)
    assert await leased.read_events(p, 10) == []
    assert await leased.redis.zrange(shard_key(leased, p), 0, -1, withscores=True) == [
        (timer_member(timer(K.USER_SILENCE)), DUE + 2)
    ]


async def test_a_disarmed_timer_goes_only_while_at_the_due_time_it_disarms(
    leased: RedisStore,
) -> None:
    """An arming the record no longer names leaves the set; one moved since by a later arming
    of the same kind and handoff is that arming, and stays."""
    p = partition_of(C, leased.partitions)
    key = shard_key(leased, p)
    await leased.arm_timer(p, timer(K.QUEUE_TIMEOUT, DUE + 5))  # moved since the disarmed one
    await leased.arm_timer(p, timer(K.QUEUE_REMINDER, DUE))
    await leased.disarm_timer(p, timer(K.QUEUE_TIMEOUT, DUE))
    await leased.disarm_timer(p, timer(K.QUEUE_REMINDER, DUE))
    await leased.disarm_timer(p, timer(K.USER_SILENCE, DUE))  # never armed: nothing to do
    assert await leased.redis.zrange(key, 0, -1, withscores=True) == [
        (timer_member(timer(K.QUEUE_TIMEOUT)), DUE + 5)
    ]


async def test_the_step_that_finishes_an_entry_leaves_what_the_last_change_says(
    leased: RedisStore,
) -> None:
    """Ack and unhold store the delivery's timer changes in order, per member: armed then
    disarmed (a run of steps) goes; disarmed then armed again stays, at the new due time."""
    p = partition_of(C, leased.partitions)
    key = shard_key(leased, p)
    for n in range(3):
        await leased.enqueue_event(p, EventId(f"e-{n}"), "x", 60)
    first, second, third = await leased.read_events(p, 10)
    assert await leased.acquire_partition(p, OWNER, 60_000)
    await leased.arm_timer(p, timer(K.QUEUE_REMINDER, DUE))
    await leased.arm_timer(p, timer(K.USER_SILENCE, DUE))
    gone = [timer(K.AGENT_SILENCE, DUE + 1), DisarmTimer(timer(K.AGENT_SILENCE, DUE + 1))]
    again = [DisarmTimer(timer(K.USER_SILENCE, DUE)), timer(K.USER_SILENCE, DUE + 2)]
    assert await leased.ack_event(p, first.entry_id, OWNER, None, [*gone, *again])
    assert await leased.hold_event(p, C, second, DUE, OWNER)
    reminder = [DisarmTimer(timer(K.QUEUE_REMINDER, DUE))]
    assert await leased.unhold_event(p, C, second.entry_id, OWNER, reminder)
    assert await leased.redis.zrange(key, 0, -1, withscores=True) == [
        (timer_member(timer(K.USER_SILENCE)), DUE + 2)
    ]
    # The same due time disarmed and armed again: the arming, the last change, stays.
    same = [DisarmTimer(timer(K.USER_SILENCE, DUE + 2)), timer(K.USER_SILENCE, DUE + 2)]
    assert await leased.ack_event(p, third.entry_id, OWNER, None, same)
    assert await leased.redis.zscore(key, timer_member(timer(K.USER_SILENCE))) == DUE + 2
