"""Scripts are called by EVALSHA and reloaded when the server has forgotten them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from redis.exceptions import ResponseError

from bridge.ids import EventId
from bridge.store import open_store
from bridge.store.redis_store import _Plain


async def test_scripts_survive_a_script_flush() -> None:
    # Embedded only: flushing the script cache of the shared real Redis would be rude.
    store = await open_store(None, partitions=2)
    assert await store.enqueue_event(0, EventId("a"), "p", 60)
    await store.redis.script_flush()  # as after a Redis restart or failover
    assert await store.enqueue_event(0, EventId("b"), "p", 60)
    assert [e.event_id for e in await store.read_events(0, 10)] == ["a", "b"]
    await store.close()


async def test_embedded_stores_are_independent() -> None:
    first, second = await open_store(None), await open_store(None)
    assert await first.enqueue_event(0, EventId("a"), "p", 60)
    assert await second.read_events(0, 10) == []
    await first.close()
    await second.close()


async def test_after_a_flush_the_first_reload_brings_back_every_script() -> None:
    """A step whose first script is still missing while its later one is back would run in
    part, out of order (here: the ack before the settle it must follow), then whole again."""
    store = await open_store(None, partitions=2)
    assert store.line is not None
    assert await store.acquire_partition(0, "o", 60_000)
    for name in ("a", "b"):
        assert await store.enqueue_event(0, EventId(name), "p", 60)
    first, second = await store.read_events(0, 10)
    await store.redis.script_flush()  # as after a Redis restart or failover
    assert await store.ack_event(0, first.entry_id, "o")  # the ack alone: reloads
    sent: list[list[str]] = []
    batch = store.line.batch

    async def recorded(commands: Sequence[Sequence[Any]], **options: Any) -> list[Any]:
        sent.append([str(command[0]) for command in commands])
        return await batch(commands, **options)

    store.line.batch = recorded  # type: ignore[method-assign]
    assert await store.ack_event(
        0, second.entry_id, "o", second.event_id, claimed=True
    )  # settle, ack
    assert sent == [["EVALSHA", "EVALSHA"]]  # once: every script was back
    await store.close()


async def test_steps_that_find_the_scripts_gone_share_one_reload() -> None:
    store = await open_store(None, partitions=2)
    assert store.line is not None
    await store.redis.script_flush()  # as after a Redis restart or failover
    reloads = 0
    batch = store.line.batch

    async def counted(commands: Sequence[Sequence[Any]], **options: Any) -> list[Any]:
        nonlocal reloads
        reloads += commands[0][0] == "SCRIPT"
        return await batch(commands, **options)

    store.line.batch = counted  # type: ignore[method-assign]
    done = await asyncio.gather(
        *(store.enqueue_event(0, EventId(f"e{i}"), "p", 60) for i in range(50))
    )
    assert all(done)
    assert reloads == 1
    await store.close()


async def test_a_reply_error_of_a_step_is_raised_once_the_step_ran_whole() -> None:
    store = await open_store(None)
    await store.redis.set("text", "v")
    step = [
        (_Plain("SET"), ["before"], ["1"]),
        (_Plain("HGET"), ["text"], ["f"]),  # WRONGTYPE
        (_Plain("SET"), ["after"], ["2"]),
    ]
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await store._in_order(step)
    assert await store.redis.mget("before", "after") == ["1", "2"]
    assert await store._in_order(step[::2]) == ["OK", "OK"]
    await store.close()
