"""The handoff core wired for real: simulator (8x8) + real Redis + Rasa stand-in, on loopback."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge.eightbyeight.client import ChatClient, Customer
from bridge.handoff import Escalated, Handoff, on_action
from bridge.ids import ConversationId, SenderId
from bridge.settings import Settings
from bridge.simulator import Simulator, SimulatorConfig, running_simulator
from bridge.store import open_store
from bridge.store.base import Store
from bridge.web.app import create_app
from bridge.web.limits import server_options
from bridge.web.runtime import Runtime, build_runtime
from tests.support.rasa_stand_in import RasaStandIn


@dataclass
class Harness:
    sim: Simulator
    rasa: RasaStandIn
    runtime: Runtime
    url: str  # the bridge's base URL

    @property
    def store(self) -> Store:
        return self.runtime.store

    @property
    def chat(self) -> ChatClient:
        return self.runtime.chat

    async def settled(self) -> None:
        """8x8 has delivered every event, and the relay has nothing pending or in flight."""
        await self.sim.idle()
        await self.runtime.relay.wait_idle()

    async def escalate(self, sender: str, **customer: Any) -> ConversationId:
        """What the escalate action does: create, link, mark the handoff requested."""
        created = await self.chat.create_conversation(Customer(name=customer.get("name", "Ada")))
        await self.link(sender, created.conversation_id)
        return created.conversation_id

    async def link(self, sender: str, conversation: ConversationId) -> None:
        s = SenderId(sender)
        record = await self.store.load_handoff(s)
        handoff = Handoff.from_fields(record.fields) if record else Handoff()
        step = on_action(handoff, Escalated(conversation, reopened=False), now_ms())
        assert await self.store.save_handoff(
            s, step.handoff.to_fields(), record.version if record else 0
        )
        await self.store.link(s, conversation)  # as the service does: state first, then the link


def now_ms() -> int:
    import time

    return int(time.time() * 1000)


async def serve_app(app: web.Application, **options: Any) -> TestServer:
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server(**options)
    return server


@pytest.fixture
async def rasa() -> AsyncIterator[tuple[RasaStandIn, str]]:
    stand_in = RasaStandIn()
    server = await serve_app(stand_in.app())
    yield stand_in, str(server.make_url("")).rstrip("/")
    await server.close()


def bridge_settings(sim: Simulator, rasa_url: str, api: str, **extra: Any) -> Settings:
    cfg = sim.config
    return Settings(  # type: ignore[call-arg]
        eightbyeight_api=api,
        eightbyeight_base_url=sim.base_url,
        eightbyeight_api_key=cfg.api_key,
        eightbyeight_api_secret=cfg.api_secret,
        eightbyeight_tenant_id=cfg.tenant_id,
        eightbyeight_channel_id=cfg.channel_id,
        rasa_url=rasa_url,
        redis_url="redis://127.0.0.1:6379/0",
        relay_retry_cap_s=0.5,  # Rasa-down tests should not wait out production backoff
        **extra,
    )


BridgeFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture(params=["gateway", "chat-v2"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_bridge(
    api: str, real_redis_url: str, key_prefix: str, rasa: tuple[RasaStandIn, str]
) -> AsyncIterator[BridgeFactory]:
    """Start bridges (each a full serve app on loopback) sharing one simulator and one Redis."""
    stand_in, rasa_url = rasa
    cleanups: list[Callable[[], Awaitable[None]]] = []
    sim_cm = running_simulator(
        SimulatorConfig(
            api_key="key-7f3a9e",
            api_secret="secret-9c2b4d",
            tenant_id="t1",
            customer_id="c1",
            channel_id="ch1",
            queue_id="101",
            webhook_url=None,
            api=api,
            delivery_retry_delays=(0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
        )  # fmt: skip
    )
    sim = await sim_cm.__aenter__()

    async def factory(*, clock: Callable[[], float] = time.time, **extra: Any) -> Harness:
        settings = bridge_settings(sim, rasa_url, api, **extra)
        store = await open_store(
            real_redis_url, prefix=key_prefix, partitions=settings.relay_partitions
        )
        runtime = await build_runtime(settings, store=store, clock=clock)
        server = await serve_app(
            create_app(runtime), **server_options(settings.bridge_client_timeout_s)
        )
        cleanups.append(server.close)
        url = str(server.make_url("")).rstrip("/")
        sim.set_webhook_url(f"{url}/8x8/events")
        return Harness(sim, stand_in, runtime, url)

    yield factory
    for close in reversed(cleanups):
        await close()
    await sim_cm.__aexit__(None, None, None)
