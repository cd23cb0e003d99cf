"""The operator commands against the simulator (real HTTP), a real Redis and a running bridge.

Each command runs through `bridge.cli.main`, in a thread (it runs its own event loop, as from a
shell), with the environment `serve` would have.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge.cli import main
from bridge.eightbyeight.client import Customer
from bridge.ids import ConversationId, SenderId
from bridge.simulator import Simulator, SimulatorConfig, running_simulator
from bridge.store import open_store
from bridge.web.app import create_app
from bridge.web.runtime import Runtime, build_runtime
from tests.core.conftest import bridge_settings, serve_app
from tests.support.rasa_stand_in import RasaStandIn
from tests.support.waiting import relay_settled

TOKEN = "rasa-token-5d1e"


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses bad arguments this way
        return int(exc.code or 0)


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class World:
    sim: Simulator
    rasa: RasaStandIn
    runtime: Runtime
    url: str
    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]
    extra_env: dict[str, str] = field(default_factory=dict)

    async def cli(self, *argv: str, **env: str) -> Ran:
        for name, value in {**self.env, **env}.items():
            self.monkeypatch.setenv(name, value)
        self.capsys.readouterr()
        code = await asyncio.to_thread(_main, list(argv))
        captured = self.capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    async def live_handoff(self, sender: str, agent: str | None = "Anna") -> ConversationId:
        """A real escalation through the service; the agent accepts (when named)."""
        result = await self.runtime.service.escalate(SenderId(sender), Customer(name="Ada"), [], "")
        cid = result.conversation_id
        assert cid is not None
        if agent:
            await self.sim.desk.accept(cid, agent_name=agent)
            await self._stored_state(sender, "with_agent")
        else:  # 8x8's queue events delivered and relayed: the record stays as it is now
            await self.sim.idle(timeout=10)
            await relay_settled(self.runtime.store)
        return cid

    async def _stored_state(self, sender: str, state: str, within: float = 10.0) -> None:
        """Wait until the relay has stored `state` for `sender` (after its push into Rasa)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            record = await self.runtime.store.load_handoff(SenderId(sender))
            if record is not None and record.fields.get("state") == state:
                return
            assert asyncio.get_running_loop().time() < deadline, f"{sender} never {state}"
            await asyncio.sleep(0.02)


@pytest.fixture(params=["gateway", "chat-v2"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def world(
    api: str, real_redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> AsyncIterator[World]:  # fmt: skip
    stand_in = RasaStandIn(token=TOKEN)
    rasa_server = await serve_app(stand_in.app())
    rasa_url = str(rasa_server.make_url("")).rstrip("/")
    cfg = SimulatorConfig(api_key="key-7f3a9e", api_secret="secret-9c2b4d", tenant_id="t1",
                          customer_id="c1", channel_id="ch1", queue_id="101", api=api,
                          delivery_retry_delays=(0.05, 0.1, 0.2))  # fmt: skip
    async with running_simulator(cfg) as sim:
        settings = bridge_settings(sim, rasa_url, api, redis_key_prefix=key_prefix,
                                   rasa_token=TOKEN, relay_max_attempts=2)  # fmt: skip
        store = await open_store(
            real_redis_url, prefix=key_prefix, partitions=settings.relay_partitions
        )
        runtime = await build_runtime(settings, store=store)
        server = await serve_app(create_app(runtime))
        url = str(server.make_url("")).rstrip("/")
        sim.set_webhook_url(f"{url}/8x8/events")
        for name in list(__import__("os").environ):
            if name.startswith(("EIGHTBYEIGHT_", "RASA_", "REDIS_", "RELAY_", "LOG_", "BRIDGE_")):
                monkeypatch.delenv(name)
        env = {
            "EIGHTBYEIGHT_API": api, "EIGHTBYEIGHT_BASE_URL": sim.base_url,
            "EIGHTBYEIGHT_API_KEY": cfg.api_key, "EIGHTBYEIGHT_API_SECRET": cfg.api_secret,
            "EIGHTBYEIGHT_TENANT_ID": cfg.tenant_id, "EIGHTBYEIGHT_CHANNEL_ID": cfg.channel_id,
            "REDIS_URL": real_redis_url, "REDIS_KEY_PREFIX": key_prefix,
            "RASA_URL": rasa_url, "RASA_TOKEN": TOKEN,
            "BRIDGE_HOST": "127.0.0.1",  # as serve's own checks want it without an action token
        }  # fmt: skip
        yield World(sim, stand_in, runtime, url, env, monkeypatch, capsys)
        await server.close()
    await rasa_server.close()
