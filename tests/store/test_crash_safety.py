"""The two changes that span hash slots, interrupted at every step (see their crash analysis in
`RedisStore.link` and `RedisStore.outbox_push`): a crash between two steps, or another process
acting between them, never misroutes an agent message nor hides a waiting user message."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bridge.errors import StoreUnavailable
from bridge.ids import ConversationId, SenderId
from bridge.store import RedisStore
from tests.support.interrupt import Crashed, before, crash_at, intercept

S = SenderId("sender-1")
OLD, NEW = ConversationId("conv-old"), ConversationId("conv-new")


async def commands_of(store: RedisStore, operation: Callable[[], Awaitable[Any]]) -> int:
    """How many commands `operation` sends (run once, uninterrupted)."""
    seen: list[int] = []

    async def count(n: int, _args: tuple[Any, ...]) -> None:
        seen.append(n)

    async with intercept(store, count):
        await operation()
    return len(seen)


# --- link: conversation -> sender first, then the record (the commit) ---


async def test_link_is_two_single_slot_steps(store: RedisStore) -> None:
    assert await commands_of(store, lambda: store.link(S, OLD)) == 2


@pytest.mark.parametrize("step", [0, 1])
async def test_a_relink_cut_short_keeps_the_old_link(store: RedisStore, step: int) -> None:
    await store.link(S, OLD)
    with pytest.raises(Crashed):
        async with intercept(store, crash_at(step)):
            await store.link(S, NEW)
    # The old link holds, the new one is not trusted half-written, the record is unchanged.
    assert await store.sender_of(OLD) == S
    assert await store.sender_of(NEW) is None
    record = await store.load_handoff(S)
    assert record is not None
    assert (record.fields["conversation_id"], record.version) == (OLD, 1)
    # Linking again (what the service's repair does) completes it.
    await store.link(S, NEW)
    assert (await store.sender_of(NEW), await store.sender_of(OLD)) == (S, None)


async def test_a_link_cut_short_after_the_record_was_saved_is_complete(store: RedisStore) -> None:
    # The service saves the record (naming the conversation) before it links.
    assert await store.save_handoff(S, {"state": "requested", "conversation_id": NEW}, 0)
    with pytest.raises(Crashed):
        async with intercept(store, crash_at(1)):
            await store.link(S, NEW)
    assert await store.sender_of(NEW) == S


# --- the outbox index: index first, then the outbox, fenced against a racing repair ---


async def drainer_visit(store: RedisStore) -> None:
    """What the outbox drainer does first for each indexed sender: look at the head."""
    for sender in await store.outbox_senders():
        await store.outbox_peek(sender)


async def assert_indexed_iff_waiting(store: RedisStore, senders: list[SenderId]) -> None:
    waiting = [s for s in senders if await store.outbox_peek(s) is not None]
    assert await store.outbox_senders() == sorted(waiting)


async def test_a_push_cut_short_at_any_step_hides_nothing(store: RedisStore) -> None:
    steps = await commands_of(store, lambda: store.outbox_push(SenderId("probe"), "m"))
    assert steps == 3
    senders = [SenderId(f"s{step}") for step in range(steps)]
    for step, sender in enumerate(senders):
        with pytest.raises(Crashed):
            async with intercept(store, crash_at(step)):
                await store.outbox_push(sender, "m")
        # At worst the index names an empty outbox; never does an item wait unindexed.
        for s in senders[: step + 1]:
            if await store.redis.llen(store.keys.outbox(s)):
                assert s in await store.outbox_senders()
    await drainer_visit(store)
    await assert_indexed_iff_waiting(store, [SenderId("probe"), *senders])


async def test_a_repair_cut_short_at_any_step_hides_nothing(store: RedisStore) -> None:
    await store.outbox_push(S, "m1")
    steps = await commands_of(store, lambda: store.outbox_pop(S, "m1"))
    assert steps == 4  # pop, then the repair: read the token, fence, forget
    for step in range(1, steps):
        await store.outbox_push(S, "m1")
        with pytest.raises(Crashed):
            async with intercept(store, crash_at(step)):
                await store.outbox_pop(S, "m1")
        await store.outbox_push(S, "m2")  # a later push finds the index in any state
        await assert_indexed_iff_waiting(store, [S])
        await store.outbox_pop(S, "m2")
        await assert_indexed_iff_waiting(store, [S])


@pytest.mark.parametrize("step", [0, 1, 2])
async def test_a_repair_between_two_steps_of_a_push_keeps_it_indexed(
    store: RedisStore, step: int
) -> None:
    """Another process finds the outbox empty and repairs the index between two steps of our
    push (on a stale entry, e.g. from a push that crashed): our item still gets indexed."""
    await store.redis.hset(store.keys.outbox_index(), S, "stale")
    async with intercept(store, before(step, lambda: store.outbox_peek(S))):
        assert await store.outbox_push(S, "m") == 1
    await assert_indexed_iff_waiting(store, [S])
    assert await store.redis.lrange(store.keys.outbox(S), 0, -1) == ["m"]


async def test_a_push_fenced_every_time_gives_up_as_unavailable(store: RedisStore) -> None:
    push = store.scripts["outbox_push"].sha

    async def repair_before_each_append(_n: int, args: tuple[Any, ...]) -> None:
        if args[0] == "EVALSHA" and args[1] == push:
            await store.outbox_peek(S)

    with pytest.raises(StoreUnavailable):
        async with intercept(store, repair_before_each_append):
            await store.outbox_push(S, "m")
    assert await store.outbox_peek(S) is None
    assert await store.outbox_senders() == []


@pytest.mark.parametrize("step", [1, 2, 3])
async def test_a_push_between_two_steps_of_a_repair_stays_indexed(
    store: RedisStore, step: int
) -> None:
    """The other way round: our outbox just emptied and its repair is under way when another
    process pushes, in full, between two of the repair's steps."""
    await store.outbox_push(S, "m1")
    async with intercept(store, before(step, lambda: store.outbox_push(S, "m2"))):
        await store.outbox_pop(S, "m1")
    await assert_indexed_iff_waiting(store, [S])
    assert await store.redis.lrange(store.keys.outbox(S), 0, -1) == ["m2"]
