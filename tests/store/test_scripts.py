"""Scripts are called by EVALSHA and reloaded when the server has forgotten them."""

from __future__ import annotations

from bridge.ids import EventId
from bridge.store import open_store


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
