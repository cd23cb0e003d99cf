"""Fixtures for the simulator tests: a real loopback webhook receiver that checks every
signature against the simulator's published JWK, simulators, and small HTTP helpers."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bridge.eightbyeight.events import ChatEvent, parse_event
from bridge.eightbyeight.signature import (
    HEADER_SIGNATURE,
    SignedHeaders,
    detached_payload,
    jwk_to_public_key,
    parse_jws,
    verify_jws,
)
from bridge.simulator import Simulator, SimulatorConfig, running_simulator

FAST_RETRIES = (0.02, 0.05, 0.1)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int
    path: str = "/8x8/events"

    @property
    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def event_type(self) -> str:
        return str(self.json.get("eventType"))

    @property
    def event(self) -> ChatEvent:
        return parse_event(self.json)

    def header(self, name: str) -> str:
        return self.headers[name.lower()]


@dataclass
class Receiver:
    """A webhook endpoint on loopback that records what arrives.

    Answers come from `statuses` (one per request, in order) and then `default`; `delay_s`
    holds each answer (to provoke the simulator's timeout)."""

    url: str = ""
    base: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: deque[int] = field(default_factory=deque)
    default: int = 200
    delay_s: float = 0.0
    decide: Callable[[Received], int | None] | None = None

    def answer(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def events(self, *, ok_only: bool = True) -> list[Received]:
        return [r for r in self.received if not ok_only or 200 <= r.answered < 300]

    def types(self, conversation_id: str | None = None) -> list[str]:
        return [
            r.event_type
            for r in self.events()
            if conversation_id is None or r.json.get("conversationId") == conversation_id
        ]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        got = Received({k.lower(): v for k, v in request.headers.items()}, body, 0, request.path)
        status = self.decide(got) if self.decide else None
        if status is None:
            status = self.statuses.popleft() if self.statuses else self.default
        got.answered = status
        self.received.append(got)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=status)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)  # any path: webhooks may point elsewhere
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rec.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    rec.url = rec.base + "/8x8/events"
    yield rec
    await runner.cleanup()


def config(receiver: Receiver, **changes: Any) -> SimulatorConfig:
    base = SimulatorConfig(
        api_key="k",
        api_secret="s",
        tenant_id="t1",
        customer_id="c1",
        channel_id="ch1",
        queue_id="101",
        webhook_url=receiver.url,
        api="gateway",
        delivery_retry_delays=FAST_RETRIES,
        delivery_timeout_s=1.0,
        fault_hang_s=5.0,
    )
    return replace(base, **changes)


MakeSim = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def make_sim(receiver: Receiver) -> AsyncIterator[MakeSim]:
    """Starts simulators (config changes as keywords), stopped after the test."""
    stack: list[Any] = []

    async def make(**changes: Any) -> Simulator:
        manager = running_simulator(config(receiver, **changes))
        sim = await manager.__aenter__()
        stack.append(manager)
        return sim

    yield make
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)


@pytest.fixture
async def sim(make_sim: MakeSim) -> Simulator:
    return await make_sim()


@pytest.fixture
async def v2_sim(make_sim: MakeSim) -> Simulator:
    return await make_sim(api="chat-v2")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --- talking to the simulator ---

GW = "/chat-gateway/v1"
GW_HEADERS = {"x-api-key": "k"}


def v2(path: str, tenant: str = "t1", region: str = "us") -> str:
    return f"/vcc/{region}/chat/v2/tenant/{tenant}{path}"


async def fetch_token(http: aiohttp.ClientSession, sim: Simulator) -> str:
    async with http.post(
        sim.base_url + "/oauth/v2/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": aiohttp.encode_basic_auth("k", "s")},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["access_token"])


async def bearer(http: aiohttp.ClientSession, sim: Simulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {await fetch_token(http, sim)}"}


@dataclass
class Answer:
    status: int
    content_type: str
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    data: Any = None,
) -> Answer:
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if json_body is not None:
        kwargs["json"] = json_body
    if data is not None:
        kwargs["data"] = data
    async with http.request(method, url, **kwargs) as resp:
        return Answer(resp.status, resp.content_type, dict(resp.headers), await resp.text())


async def gw_create(http: aiohttp.ClientSession, sim: Simulator, **body: Any) -> str:
    payload = {"channelId": "ch1", "user": {"name": "Jo"}, **body}
    answer = await call(
        http, "POST", sim.base_url + GW + "/conversations", headers=GW_HEADERS, json_body=payload
    )
    assert answer.status == 202, answer.text
    return str(answer.json["conversationId"])


async def v2_create(
    http: aiohttp.ClientSession, sim: Simulator, headers: dict[str, str], **body: Any
) -> str:
    payload = {"channelId": "ch1", "customer": {"name": "Jo"}, **body}
    answer = await call(
        http, "POST", sim.base_url + v2("/conversations"), headers=headers, json_body=payload
    )
    assert answer.status == 202, answer.text
    return str(answer.json["conversationId"])


async def verify_signature(http: aiohttp.ClientSession, sim: Simulator, got: Received) -> str:
    """Check `got` as the bridge would: the JWK by kid from the simulator, RS256 over the
    detached payload rebuilt from the raw body and headers. Returns the kid."""
    jws = parse_jws(got.header(HEADER_SIGNATURE))
    async with http.get(f"{sim.base_url}{GW}/jwk/{jws.kid}/public") as resp:
        assert resp.status == 200
        jwk = await resp.json()
    signed = SignedHeaders.from_headers(got.headers)
    verify_jws(jwk_to_public_key(jwk), jws, detached_payload(got.body, signed))
    return jws.kid


async def settle(sim: Simulator) -> None:
    await sim.idle(timeout=5.0)
