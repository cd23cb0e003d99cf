"""Relay throughput against the machine's ceiling, measured in one process.

Baseline: a bare aiohttp handler that does what any webhook receiver on Redis must do at the
least — read the body, one XADD — answering 200. Bridge: the real `serve` app (signature
verification off, so both sides do the same HTTP+Redis work at the door) plus its relay,
delivering every event into a Rasa stand-in over loopback HTTP. Both get the same load: E agent
messages over C conversations, P requests in flight. The figure is events/s end to end (for
the bridge: until the stand-in has received them all) and the ratio bridge / baseline; the
product target is >= 0.6.

    PYTHONPATH=. python bench/relay_throughput.py [EVENTS] [CONVERSATIONS] [IN_FLIGHT]   # defaults 3000 50 32
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.handoff import Escalated, Handoff, on_action
from bridge.ids import ConversationId, SenderId
from bridge.settings import Settings
from bridge.store import open_store
from bridge.web.app import create_app
from bridge.web.runtime import build_runtime
from tests.support.rasa_stand_in import RasaStandIn
from tests.support.waiting import eventually

REDIS_URL = "redis://127.0.0.1:6379/0"


def _bodies(events: int, conversations: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(events):
        cid = f"conv-{i % conversations}"
        body = {"eventType": "TEXT", "messageType": "AGENT", "conversationId": cid, "timestamp": i,
                "agentId": "a1", "agentName": "Anna", "message": f"message {i}"}  # fmt: skip
        out.append((uuid.uuid4().hex, json.dumps(body, separators=(",", ":")).encode()))
    return out


async def _fire(url: str, bodies: list[tuple[str, bytes]], in_flight: int) -> None:
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            while not queue.empty():
                event_id, body = queue.get_nowait()
                headers = {"x-8x8-event-id": event_id, "content-type": "application/json"}
                async with http.post(url, data=body, headers=headers) as r:
                    assert r.status == 200, r.status

        await asyncio.gather(*(worker() for _ in range(in_flight)))


async def baseline(bodies: list[tuple[str, bytes]], in_flight: int) -> float:
    redis = aioredis.from_url(REDIS_URL)
    key = f"bench:{uuid.uuid4().hex}:stream"

    async def handler(request: web.Request) -> web.Response:
        await redis.xadd(key, {"ev": await request.read()})
        return web.json_response({"result": "accepted"})

    app = web.Application()
    app.router.add_post("/8x8/events", handler)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    start = time.perf_counter()
    await _fire(str(server.make_url("/8x8/events")), bodies, in_flight)
    elapsed = time.perf_counter() - start
    await server.close()
    await redis.delete(key)
    await redis.aclose()
    return len(bodies) / elapsed


async def bridge(bodies: list[tuple[str, bytes]], conversations: int, in_flight: int) -> float:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    rasa = RasaStandIn()
    rasa_server = TestServer(rasa.app(), host="127.0.0.1", port=0)
    await rasa_server.start_server()
    settings = Settings(  # type: ignore[call-arg]
        eightbyeight_api_key="k", eightbyeight_channel_id="c", eightbyeight_verify_signatures=False,
        rasa_url=str(rasa_server.make_url("")).rstrip("/"), redis_url=REDIS_URL, redis_key_prefix=prefix,
    )  # fmt: skip
    store = await open_store(REDIS_URL, prefix=prefix)
    for i in range(conversations):
        sender, cid = SenderId(f"user-{i}"), ConversationId(f"conv-{i}")
        step = on_action(Handoff(), Escalated(cid, reopened=False), 0)
        # Already with an agent, so every TEXT becomes one push into Rasa.
        await store.save_handoff(sender, {**step.handoff.to_fields(), "state": "with_agent"}, 0)
        await store.link(sender, cid)
    runtime = await build_runtime(settings, store=store)
    server = TestServer(create_app(runtime), host="127.0.0.1", port=0)
    await server.start_server()
    await asyncio.sleep(0.5)  # the relay takes its partition leases
    start = time.perf_counter()
    await _fire(str(server.make_url("/8x8/events")), bodies, in_flight)
    await eventually(lambda: len(rasa.pushes) >= len(bodies), within=300, what="every push")
    elapsed = time.perf_counter() - start
    await server.close()
    await rasa_server.close()
    cleanup = aioredis.from_url(REDIS_URL)
    async for key in cleanup.scan_iter(match=f"{prefix}*"):
        await cleanup.delete(key)
    await cleanup.aclose()
    return len(bodies) / elapsed


async def main() -> None:
    events, conversations, in_flight = (
        int(a) for a in (sys.argv[1:] + ["3000", "50", "32"][len(sys.argv) - 1 :])[:3]
    )
    bodies = _bodies(events, conversations)
    base = await baseline(bodies, in_flight)
    ours = await bridge(bodies, conversations, in_flight)
    print(f"events={events} conversations={conversations} in_flight={in_flight}")
    print(f"baseline (aiohttp + one XADD):        {base:8.0f} events/s")
    print(f"bridge (door + relay into Rasa, e2e): {ours:8.0f} events/s")
    print(f"ratio: {ours / base:.2f} (target >= 0.6)")


if __name__ == "__main__":
    asyncio.run(main())
