"""Relay throughput against the machine's ceiling, measured in one process.

Baseline: a bare aiohttp handler that does what any webhook receiver on Redis must do at the
least — read the body, one XADD — answering 200. Bridge: the real `serve` app (signature
verification off, so both sides do the same HTTP+Redis work at the door) plus its relay,
delivering every event into a Rasa stand-in over loopback HTTP, in another process (as Rasa
is). Both get the same load: E agent
messages over C conversations, P requests in flight. The figure is events/s end to end (for
the bridge: until the stand-in has received them all) and the ratio bridge / baseline; the
product target is >= 0.6.

    PYTHONPATH=. python bench/relay_throughput.py [EVENTS] [CONVERSATIONS] [IN_FLIGHT]   # defaults 3000 50 32
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def eventually_async(probe: Callable[[], Awaitable[object]], within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            await probe()
            return
        except aiohttp.ClientError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


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


STAND_IN = """
import sys
from aiohttp import web
sys.path.insert(0, ".")
from tests.support.rasa_stand_in import RasaStandIn
stand_in = RasaStandIn()
app = stand_in.app()
async def count(_r):
    return web.json_response({"pushes": len(stand_in.pushes)})
app.router.add_get("/_count", count)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def _pushes(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/_count") as r:
        return int((await r.json())["pushes"])


async def bridge(bodies: list[tuple[str, bytes]], conversations: int, in_flight: int) -> float:
    """The bridge in this process; the Rasa stand-in in another, as Rasa would be."""
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    port = _free_port()
    rasa_url = f"http://127.0.0.1:{port}"
    stand_in = subprocess.Popen([sys.executable, "-c", STAND_IN, str(port)])  # noqa: ASYNC220
    async with aiohttp.ClientSession() as http:
        await eventually_async(lambda: _pushes(http, rasa_url), within=30)
        rate = await _bridge(bodies, conversations, in_flight, prefix, rasa_url, http)
    stand_in.terminate()
    stand_in.wait()
    return rate


async def _bridge(
    bodies: list[tuple[str, bytes]], conversations: int, in_flight: int, prefix: str, rasa_url: str,
    http: aiohttp.ClientSession,
) -> float:  # fmt: skip
    settings = Settings(  # type: ignore[call-arg]
        eightbyeight_api_key="k", eightbyeight_channel_id="c", eightbyeight_verify_signatures=False,
        rasa_url=rasa_url, redis_url=REDIS_URL, redis_key_prefix=prefix,
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
    while await _pushes(http, rasa_url) < len(bodies):  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - start
    await server.close()
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
