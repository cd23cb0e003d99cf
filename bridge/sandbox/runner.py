"""Starting and stopping the sandbox's parts, in one process and one event loop.

    page (--host:--port) ──► bot (demo bot, or Rasa at RASA_URL) ──► bridge POST /webhook
        ▲   /_sim desk API        ▲ bot events / trigger_intent            │ actions
        │                         └──────────── bridge relay ◄─────────────┤
        └── /bot (callback) ◄── bot                    simulator (8x8) ◄───┘ ──► bridge /8x8/events

The bridge is the real one (`build_runtime` + `create_app`) on the embedded store, verifying
the simulator's signatures. Every part listens on loopback. Sockets are bound before anything
starts, so each part knows the others' URLs from the start (and a port in use fails fast).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from yarl import URL

from bridge.eightbyeight.config import ApiFamily
from bridge.ids import SenderId
from bridge.sandbox.agent_typing import show_agent_typing
from bridge.sandbox.bot_choice import BotChoice
from bridge.sandbox.chat import ChatHub, ChatLabels
from bridge.sandbox.demo_bot import DemoBot, DemoBotServer, load_domain
from bridge.sandbox.errors import SandboxError
from bridge.sandbox.web import PageServer
from bridge.settings import Settings, load_settings
from bridge.simulator import Simulator, SimulatorConfig
from bridge.store import open_store
from bridge.web.app import create_app
from bridge.web.limits import server_options
from bridge.web.runtime import Runtime, build_runtime

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Where the example Rasa bot expects the sandbox's parts (endpoints.yml, credentials.yml).
RASA_CALLBACK_PORT = 5034
SHUTDOWN_S = 1.0  # open event streams are cut after this


@dataclass(frozen=True)
class SandboxConfig:
    host: str = LOOPBACK
    port: int = 8000  # 0: any free port
    api: ApiFamily = "gateway"
    bot: BotChoice = BotChoice(None)
    # With a real Rasa, the ports its example endpoints.yml / credentials.yml name.
    bridge_port: int = 0
    callback_port: int | None = None


class Sandbox:
    """The running parts. `start()` once, then `stop()` (also after a failed start)."""

    def __init__(self, config: SandboxConfig, settings: Settings) -> None:
        self.config = config
        self._settings = settings
        self.url = self.bridge_url = self.bot_url = ""
        self.sim: Simulator | None = None
        self.runtime: Runtime | None = None
        self.hub = ChatHub()
        self.demo_bot: DemoBot | None = None  # None with a real Rasa
        self._socks: list[socket.socket] = []
        self._runners: list[web.AppRunner] = []  # page, bridge, bot: stopped in this order
        self._bridge_serving = False
        self._typing: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        config = self.config
        # Every socket first: a port in use fails before anything runs, and each part knows
        # the others' URLs from the start.
        page_sock = self._bind(config.host, config.port)
        callback_sock = self._bind(LOOPBACK, config.callback_port) if config.callback_port else None
        bridge_sock = self._bind(LOOPBACK, config.bridge_port)
        bot_sock = None if config.bot.rasa_url else self._bind(LOOPBACK, 0)
        self.url, self.bridge_url = _url(page_sock), _url(bridge_sock)
        self.bot_url = _url(bot_sock) if bot_sock is not None else str(config.bot.rasa_url)

        domain = load_domain()
        self.sim = sim = Simulator(_simulator_config(config.api))
        await sim.start(LOOPBACK, 0)

        bridge_settings = _bridge_settings(self._settings, sim, config, self.bot_url)
        store = await open_store(None, partitions=bridge_settings.relay_partitions)
        self.runtime = runtime = await build_runtime(bridge_settings, store=store)
        bridge_runner = await self._serve(
            create_app(runtime), [bridge_sock],
            **server_options(bridge_settings.bridge_client_timeout_s),
        )  # fmt: skip
        self._bridge_serving = True  # from now on the app closes the runtime
        sim.set_webhook_url(f"{self.bridge_url}/8x8/events")

        bot_runner = None
        if bot_sock is not None:
            server = DemoBotServer(
                domain,
                action_url=_action_url(self.bridge_url, bridge_settings),
                callback_url=f"{self.url}/bot",
            )
            self.demo_bot = server.bot
            bot_runner = await self._serve(server.app(), [bot_sock])

        notices = domain.texts_of("utter_handoff_")  # what the handoff itself says
        labels = ChatLabels(sim, notices, lambda sender: _conversation_of(runtime, sender))
        page = PageServer(
            hub=self.hub, labels=labels, sim=sim, bot_url=self.bot_url,
            info=_info(config, sim, self.bridge_url, self.bot_url),
        )  # fmt: skip
        socks = [page_sock] if callback_sock is None else [page_sock, callback_sock]
        page_runner = await self._serve(page.app(), socks)
        self._runners = [r for r in (page_runner, bridge_runner, bot_runner) if r is not None]
        self._typing = asyncio.create_task(
            show_agent_typing(sim, sim.subscribe(), runtime.store, self.hub), name="sandbox-typing"
        )

    async def stop(self) -> None:
        """End the page's event streams (the chat's, then the desk's, which end with the
        simulator), then stop the page, the bridge (its relay finishes what it holds) and the
        demo bot."""
        if self._stopped:
            return
        self._stopped = True
        self.hub.close()
        if self.sim is not None:
            await self.sim.stop()
        if self._typing is not None:
            await self._typing  # its subscription ended with the simulator
        for runner in self._runners:
            await runner.cleanup()
        if self.runtime is not None and not self._bridge_serving:
            await self.runtime.close()
        for sock in self._socks:
            sock.close()

    def _bind(self, host: str, port: int) -> socket.socket:
        sock = _bind(host, port)
        self._socks.append(sock)
        return sock

    async def _serve(
        self, app: web.Application, socks: list[socket.socket], **options: Any
    ) -> web.AppRunner:
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_S, **options
        )
        await runner.setup()
        self._runners.insert(0, runner)  # stopped even if starting fails later
        for sock in socks:
            await web.SockSite(runner, sock).start()
        return runner


@asynccontextmanager
async def running_sandbox(
    config: SandboxConfig, settings: Settings | None = None
) -> AsyncIterator[Sandbox]:
    """The whole sandbox, started; stopped on exit. Raises SandboxError when it cannot start."""
    sandbox = Sandbox(config, settings or load_settings())
    try:
        await sandbox.start()
        yield sandbox
    finally:
        await sandbox.stop()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError as exc:
        raise SandboxError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):
        host = LOOPBACK
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _simulator_config(api: ApiFamily) -> SimulatorConfig:
    # Demo credentials for this run only: the bridge gets the same ones, nobody else needs them.
    return SimulatorConfig(
        api_key="eght_" + secrets.token_urlsafe(24),
        api_secret=secrets.token_urlsafe(24),
        api=api,
        webhook_url=None,  # set once the bridge listens
    )


def _bridge_settings(
    settings: Settings, sim: Simulator, config: SandboxConfig, bot_url: str
) -> Settings:
    """The user's settings (handoff behaviour, log level, Rasa token), with 8x8 pointed at the
    simulator, the embedded store, and Rasa pointed at the chosen bot."""
    cfg = sim.config
    overrides: dict[str, Any] = {
        "eightbyeight_api": config.api,
        "eightbyeight_base_url": sim.base_url,
        "eightbyeight_auth_url": None,
        "eightbyeight_api_key": cfg.api_key,
        "eightbyeight_api_secret": cfg.api_secret,
        "eightbyeight_tenant_id": cfg.tenant_id,
        "eightbyeight_channel_id": cfg.channel_id,
        "eightbyeight_queue_id": None,
        "eightbyeight_region": "us",
        "eightbyeight_verify_signatures": True,
        "redis_url": None,
        "rasa_url": bot_url,
        "rasa_output_channel": "latest",
        # A bot restarted during a demo should get its messages within seconds, not 30.
        "relay_retry_cap_s": 2.0,
    }
    if not config.bot.is_rasa:
        overrides["rasa_token"] = None
    values = settings.model_dump()
    values.update(overrides)
    return Settings.model_validate(values)


def _action_url(bridge_url: str, settings: Settings) -> str:
    # The demo bot calls the actions as Rasa does: with the action token as `?token=`.
    url = URL(f"{bridge_url}/webhook")
    tokens = settings.action_tokens
    return str(url.with_query(token=tokens[0]) if tokens else url)


async def _conversation_of(runtime: Runtime, sender: str) -> str | None:
    return (await runtime.service.handoff(SenderId(sender))).conversation_id


def _info(config: SandboxConfig, sim: Simulator, bridge_url: str, bot_url: str) -> dict[str, Any]:
    bot = config.bot
    label = (
        f"Rasa {bot.rasa_version} at {bot.rasa_url}"
        if bot.is_rasa
        else "demo bot (stand-in for Rasa)"
    )
    return {
        "bot": {"kind": "rasa" if bot.is_rasa else "demo", "label": label, "url": bot_url},
        "api": config.api,
        "simulatorUrl": sim.base_url,
        "bridgeUrl": bridge_url,
        "queueId": sim.config.queue_id,
    }
