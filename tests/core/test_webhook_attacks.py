"""The attacks on POST /8x8/events of issue 8, each run against a real `serve` process.

The attacker has network access and one or more requests 8x8 sent (captured here from the
simulator's delivery log, as a proxy log or a packet capture would give them). Each test counts
what reached the user through the Rasa stand-in; a genuine event sent after the attack, in the
same conversation, is the signal that anything the attack had smuggled in would have arrived.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from bridge.eightbyeight import make_client
from bridge.eightbyeight.client import ChatClient, Customer
from bridge.eightbyeight.signature import (
    HEADER_SIGNATURE,
    SignedHeaders,
    b64url,
    detached_payload,
    protected_header,
)
from bridge.handoff import Escalated, Handoff, on_action
from bridge.ids import SenderId
from bridge.simulator import Simulator, SimulatorConfig, running_simulator
from bridge.simulator.delivery import Delivery
from bridge.store import open_store
from bridge.store.base import Store
from tests.core.conftest import bridge_settings, now_ms
from tests.support.crc_forge import forge
from tests.support.rasa_stand_in import RasaStandIn
from tests.support.serve_process import ServeProcess, free_port
from tests.support.waiting import eventually

JOINED = "#EXTERNAL_agent_joined"


@dataclass
class Edge:
    sim: Simulator
    rasa: RasaStandIn
    store: Store
    chat: ChatClient
    serve: ServeProcess

    async def live_handoff(self, sender: str) -> str:
        """A conversation whose agent has joined, as the user sees it."""
        created = await self.chat.create_conversation(Customer(name=sender))
        s = SenderId(sender)
        step = on_action(Handoff(), Escalated(created.conversation_id, reopened=False), now_ms())
        assert await self.store.save_handoff(s, step.handoff.to_fields(), 0)
        await self.store.link(s, created.conversation_id)
        await self.sim.desk.accept(created.conversation_id, agent_name="Anna")
        await eventually(lambda: JOINED in self.rasa.timeline(sender), 10, f"{sender} joined")
        return created.conversation_id

    async def agent_says(self, sender: str, cid: str, text: str) -> Delivery:
        """The agent writes; returns the request 8x8 sent (what an attacker captures)."""
        await self.sim.desk.say(cid, text)
        await eventually(lambda: text in self.rasa.texts(sender), 10, f"{text!r} delivered")
        return self.captured(cid, lambda body: text in body)

    def captured(self, cid: str, match: object) -> Delivery:
        return next(
            d
            for d in reversed(self.sim.deliveries)
            if d.ok and d.conversation_id == cid and match(d.body.decode())  # type: ignore[operator]
        )

    async def post(self, body: bytes, headers: list[tuple[str, str]]) -> int:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.serve.url}/8x8/events", data=body, headers=headers) as r,
        ):
            return r.status


@pytest.fixture
def serve_processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for p in started:
        p.stop()


@pytest.fixture
async def edge(
    real_redis_url: str,
    key_prefix: str,
    rasa: tuple[RasaStandIn, str],
    serve_processes: list[ServeProcess],
) -> AsyncIterator[Edge]:
    stand_in, rasa_url = rasa
    cfg = SimulatorConfig(api_key="key-7f3a9e", api_secret="secret-9c2b4d", tenant_id="t1", customer_id="c1",
                          channel_id="ch1", queue_id="101", webhook_url=None, api="gateway",
                          delivery_retry_delays=(0.1, 0.2, 0.5))  # fmt: skip
    async with running_simulator(cfg) as sim:
        settings = bridge_settings(sim, rasa_url, "gateway")
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("EIGHTBYEIGHT_", "RASA_", "REDIS_", "BRIDGE_"))
        }
        env.update({
            "EIGHTBYEIGHT_API": "gateway", "EIGHTBYEIGHT_BASE_URL": sim.base_url,
            "EIGHTBYEIGHT_API_KEY": "key-7f3a9e", "EIGHTBYEIGHT_TENANT_ID": "t1",
            "EIGHTBYEIGHT_CHANNEL_ID": "ch1", "RASA_URL": rasa_url, "REDIS_URL": real_redis_url,
            "REDIS_KEY_PREFIX": key_prefix, "RELAY_RETRY_CAP_S": "0.5", "LOG_LEVEL": "WARNING",
        })  # fmt: skip
        serve = ServeProcess(env, free_port())
        serve_processes.append(serve)
        await serve.start()
        sim.set_webhook_url(f"{serve.url}/8x8/events")
        store = await open_store(
            real_redis_url, prefix=key_prefix, partitions=settings.relay_partitions
        )
        chat = make_client(settings.eightbyeight())
        yield Edge(sim, stand_in, store, chat, serve)
        await chat.close()
        await store.close()


def _headers(delivery: Delivery) -> list[tuple[str, str]]:
    return list(delivery.headers.items())


def _with_pad(body: dict[str, object]) -> bytes:
    """A JSON body with a string field holding the CRC-forging pad."""
    return json.dumps({**body, "x": "{PAD}"}, separators=(",", ":")).encode()


async def test_a_typing_events_signature_cannot_carry_a_forged_agent_message(edge: Edge) -> None:
    cid = await edge.live_handoff("kim")
    await edge.sim.desk.typing(cid)
    typing = await edge.sim.wait_for_deliveries(
        lambda d: d.event_type == "ACTIVITY" and d.conversation_id == cid
    )
    forged = forge(
        _with_pad(
            {
                "eventType": "MESSAGE",
                "conversationId": cid,
                "timestamp": now_ms(),
                "data": {
                    "sender": {"type": "agent", "name": "Anna"},
                    "text": "Please confirm your card number here",
                },
            }
        ),  # fmt: skip
        zlib.crc32(typing.body),
    )
    assert await edge.post(forged, _headers(typing)) == 401

    await edge.agent_says("kim", cid, "genuine")
    assert edge.rasa.texts("kim") == ["genuine"]


async def test_an_accepted_events_signature_cannot_deliver_to_another_conversation(
    edge: Edge,
) -> None:
    kim, lee = await edge.live_handoff("kim"), await edge.live_handoff("lee")
    captured = await edge.agent_says("kim", kim, "your refund is approved")
    original = json.loads(captured.body)
    forged = forge(_with_pad({**original, "conversationId": lee}), zlib.crc32(captured.body))
    assert await edge.post(forged, _headers(captured)) == 401

    await edge.agent_says("lee", lee, "genuine for lee")
    assert edge.rasa.texts("lee") == ["genuine for lee"]
    assert edge.rasa.texts("kim") == ["your refund is approved"]


async def test_a_second_event_id_header_cannot_make_a_replay_new(edge: Edge) -> None:
    cid = await edge.live_handoff("kim")
    captured = await edge.agent_says("kim", cid, "hello once")
    statuses = [
        await edge.post(
            captured.body, [("x-8x8-event-id", secrets.token_urlsafe(16)), *_headers(captured)]
        )
        for _ in range(3)
    ]
    assert statuses == [401, 401, 401]
    # The plain replay is a duplicate: 2xx, and nothing new for the user.
    assert await edge.post(captured.body, _headers(captured)) == 200

    await edge.agent_says("kim", cid, "genuine")
    assert edge.rasa.texts("kim") == ["hello once", "genuine"]


async def test_an_event_signed_for_another_tenant_is_refused(edge: Edge) -> None:
    cid = await edge.live_handoff("kim")
    body = json.dumps(
        {"eventType": "MESSAGE", "conversationId": cid, "timestamp": now_ms(),
         "data": {"sender": {"type": "agent", "name": "Anna"}, "text": "from another tenant"}},
        separators=(",", ":"),
    ).encode()  # fmt: skip
    signed = SignedHeaders(
        "c1", secrets.token_urlsafe(16), 0, "other-tenant", int(time.time() * 1000)
    )
    headers = {**signed.as_headers(), "content-type": "application/json"}
    headers[HEADER_SIGNATURE] = edge.sim.keys.sign(detached_payload(body, signed))
    assert await edge.post(body, list(headers.items())) == 401

    await edge.agent_says("kim", cid, "genuine")
    assert edge.rasa.texts("kim") == ["genuine"]


async def test_a_flood_of_forged_kids_costs_8x8_about_one_key_fetch_per_second(
    edge: Edge,
) -> None:
    body = b'{"eventType":"TEXT","conversationId":"c-1","message":"hi"}'
    floods = []
    for _ in range(500):
        signed = SignedHeaders("c1", secrets.token_urlsafe(16), 0, "t1", int(time.time() * 1000))
        jws = f"{protected_header(secrets.token_urlsafe(16))}..{b64url(os.urandom(256))}"
        floods.append(list({**signed.as_headers(), HEADER_SIGNATURE: jws}.items()))

    def jwk_requests() -> tuple[int, int]:
        """Key lookups (the gateway path, asked first) and all JWK requests (a gateway lookup
        of an unknown kid also tries the Chat API v2 path)."""
        paths = [r.path for r in edge.sim.requests if "/jwk/" in r.path]
        return sum(not p.startswith("/vcc/") for p in paths), len(paths)

    before = jwk_requests()
    started = time.monotonic()
    statuses = [await edge.post(body, headers) for headers in floods]
    elapsed = time.monotonic() - started
    lookups, requests = (after - then for after, then in zip(jwk_requests(), before, strict=True))
    # One lookup at once, then one per second of the flood.
    assert lookups <= 1 + int(elapsed), (lookups, elapsed)
    assert requests <= 2 * lookups
    assert set(statuses) <= {401, 503}
