"""A Redis that cannot be reached shows as `StoreUnavailable`, quickly, from every method."""

from __future__ import annotations

import inspect
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import fakeredis
import pytest

from bridge.errors import StoreUnavailable
from bridge.handoff import TimerFired, TimerKind
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import RedisStore, Store, StreamEntry, open_store
from bridge.store.base import RunAck, RunMessage
from tests.support.own_redis import OwnRedis
from tests.support.redis_cluster import LocalCluster

S, C = SenderId("s"), ConversationId("c")
ENTRY = StreamEntry("1-0", EventId("e"), "p")
RUN = RunMessage("1-0", EventId("e"), "d", 0)

CALLS: dict[str, Callable[[RedisStore], Awaitable[Any]]] = {
    "ping": lambda s: s.ping(),
    "link": lambda s: s.link(S, C),
    "sender_of": lambda s: s.sender_of(C),
    "load_handoff": lambda s: s.load_handoff(S),
    "save_handoff": lambda s: s.save_handoff(S, {"a": "b"}, 0),
    "acquire_sender_lease": lambda s: s.acquire_sender_lease(S, 1000),
    "release_sender_lease": lambda s: s.release_sender_lease(S, "t"),
    "claim_event": lambda s: s.claim_event(EventId("e"), "h", settled=False),
    "settle_event": lambda s: s.settle_event(EventId("e")),
    "enqueue_event": lambda s: s.enqueue_event(0, EventId("e"), "p", 60),
    "admit_event": lambda s: s.admit_event(0, EventId("e"), "h", "p", 60),
    "acquire_partition": lambda s: s.acquire_partition(0, "o", 1000),
    "relay_heartbeat": lambda s: s.relay_heartbeat("o", 1000),
    "relay_leave": lambda s: s.relay_leave("o"),
    "begin_attempt": lambda s: s.begin_attempt(0, "1-0", SenderId("s")),
    "release_partition": lambda s: s.release_partition(0, "o"),
    "read_events": lambda s: s.read_events(0, 10),
    "ack_event": lambda s: s.ack_event(0, "1-0", "o"),
    "note_attempt": lambda s: s.note_attempt(0, "1-0"),
    "dead_letter": lambda s: s.dead_letter(0, ENTRY, "r", "o"),
    "list_dead_letters": lambda s: s.list_dead_letters(),
    "replay_dead_letter": lambda s: s.replay_dead_letter(0, "1-0"),
    "hold_event": lambda s: s.hold_event(0, C, ENTRY, 1, "o"),
    "held_conversations": lambda s: s.held_conversations(0),
    "held_events": lambda s: s.held_events(0, C),
    "unhold_event": lambda s: s.unhold_event(0, C, "1-0", "o"),
    "message_state": lambda s: s.message_state(0, C, "d", 1),
    "claim_message": lambda s: s.claim_message(0, C, "o", "d", EventId("e"), 0),
    "ack_message": lambda s: s.ack_message(0, "1-0", "o", C, "d", 0),
    "claim_and_begin": lambda s: s.claim_and_begin(0, C, "o", "d", EventId("e"), 0, "1-0", S),
    "unhold_message": lambda s: s.unhold_message(0, C, "1-0", "o", "d", 0),
    "claim_and_begin_run": lambda s: s.claim_and_begin_run(0, C, "o", [RUN], S),
    "ack_messages": lambda s: s.ack_messages(0, "o", C, [RunAck("1-0", "d", 1, EventId("e"))]),
    "outbox_push": lambda s: s.outbox_push(S, "m"),
    "outbox_peek": lambda s: s.outbox_peek(S),
    "outbox_pop": lambda s: s.outbox_pop(S, "m"),
    "outbox_senders": lambda s: s.outbox_senders(),
    "arm_timer": lambda s: s.arm_timer(0, TimerFired(TimerKind.USER_SILENCE, C, 1, 2)),
    "disarm_timer": lambda s: s.disarm_timer(0, TimerFired(TimerKind.USER_SILENCE, C, 1, 2)),
    "fire_timers": lambda s: s.fire_timers(0, 1, "o"),
}


def test_every_store_method_is_covered_here() -> None:
    methods = {
        name
        for name, value in inspect.getmembers(Store)
        if inspect.iscoroutinefunction(value) and not name.startswith("_")
    }
    assert methods - {"close"} == set(CALLS)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # free again once closed: nobody listens there


async def test_unreachable_redis_fails_fast() -> None:
    store = await open_store(f"redis://127.0.0.1:{closed_port()}/0")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert time.monotonic() - started < 2.0
    await store.close()


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_every_method_raises_store_unavailable(name: str) -> None:
    server = fakeredis.FakeServer(version=(7,))
    store = RedisStore(fakeredis.FakeAsyncRedis(server=server, decode_responses=True))
    server.connected = False  # every command now fails with redis' ConnectionError
    with pytest.raises(StoreUnavailable):
        await CALLS[name](store)
    await store.close()


async def test_unreachable_cluster_fails_fast() -> None:
    store = await open_store(f"redis+cluster://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert time.monotonic() - started < 2.0
    await store.close()


@pytest.mark.skipif(
    os.environ.get("TEST_REDIS_CLUSTER") != "all", reason="opt-in: TEST_REDIS_CLUSTER=all"
)
async def test_a_dead_cluster_master_makes_its_slots_unavailable() -> None:
    """Its own cluster (the session's must stay whole): one of three masters dies, without a
    replica to take over; a sender whose slot it served is unavailable, not an error."""
    cluster = LocalCluster()
    cluster.start()
    store = await open_store(cluster.url)
    try:
        senders = [SenderId(f"s{i}") for i in range(12)]  # spread over the three masters
        for sender in senders:
            assert await store.save_handoff(sender, {"state": "live"}, 0)
        cluster.procs[1].kill()
        with pytest.raises(StoreUnavailable):
            for sender in senders:
                await store.load_handoff(sender)
    finally:
        await store.close()
        cluster.stop()


async def test_a_redis_out_of_memory_is_unavailable() -> None:
    """redis-py strips the code from an OOM reply (`OutOfMemoryError`): still Redis unable to
    take writes now, for a plain command as for a script's."""
    if not OwnRedis.available():
        pytest.skip("no redis-server")
    server = OwnRedis("--maxmemory", "1", "--maxmemory-policy", "noeviction")
    server.start()
    store = await open_store(f"redis://127.0.0.1:{server.port}/0")
    try:
        with pytest.raises(StoreUnavailable):
            await store.link(S, C)  # a script
        with pytest.raises(StoreUnavailable):
            await store.note_attempt(0, "1-0")  # a plain command, through the client
    finally:
        await store.close()
        server.stop()
