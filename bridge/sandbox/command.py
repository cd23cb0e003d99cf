"""`handoff-bridge sandbox`: start everything, say where to look, run until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from bridge import logs
from bridge.eightbyeight.config import ApiFamily
from bridge.sandbox.bot_choice import BotChoice, choose_bot, explicitly_set
from bridge.sandbox.errors import SandboxError
from bridge.sandbox.runner import (
    LOOPBACK,
    RASA_CALLBACK_PORT,
    Sandbox,
    SandboxConfig,
    running_sandbox,
)
from bridge.settings import Settings

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def run(
    *, settings: Settings, host: str = LOOPBACK, port: int = 8000, api: ApiFamily = "gateway"
) -> int:
    """Serve the sandbox until Ctrl-C or SIGTERM. 0 when stopped, 2 (with a one-line reason
    on stderr) when it cannot start."""
    # Quiet by default: the terminal is for the banner. LOG_LEVEL=INFO shows the bridge's logs.
    logs.configure(settings.log_level if explicitly_set("LOG_LEVEL") else "WARNING")
    try:
        asyncio.run(_serve(settings, host, port, api))
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was installed
        pass
    except SandboxError as exc:
        print(f"handoff-bridge sandbox: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(settings: Settings, host: str, port: int, api: ApiFamily) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(sig, stop.set)
    bot = await choose_bot(settings)
    if bot.reason:
        print(f"note: {bot.reason}; using the built-in demo bot.", file=sys.stderr)
    config = SandboxConfig(
        host=host,
        port=port,
        api=api,
        bot=bot,
        # A real Rasa reaches the bridge and the page where the example bot's endpoints.yml
        # and credentials.yml say: the action endpoint on BRIDGE_PORT, the callback on 5034.
        bridge_port=settings.bridge_port if bot.is_rasa else 0,
        callback_port=RASA_CALLBACK_PORT if bot.is_rasa else None,
    )
    async with running_sandbox(config, settings) as sandbox:
        print("\n".join(banner(sandbox, bot)), flush=True)
        if host not in LOOPBACK_NAMES:
            print(
                f"WARNING: listening on {host}: anyone who can reach it can drive the agent "
                "desk and chat as any user (the sandbox has no authentication).",
                file=sys.stderr,
                flush=True,
            )
        await stop.wait()
    print("Sandbox stopped.", flush=True)


def _token_note(sandbox: Sandbox) -> str:
    protected = sandbox.runtime is not None and sandbox.runtime.settings.action_tokens
    return ", token: ${BRIDGE_ACTION_TOKEN}" if protected else ""


def banner(sandbox: Sandbox, bot: BotChoice) -> list[str]:
    assert sandbox.sim is not None
    lines = [f"Sandbox ready: open {sandbox.url}/"]
    if bot.is_rasa:
        lines += [
            f"  bot: Rasa {bot.rasa_version} at {bot.rasa_url} (RASA_URL)",
            f"    it must call the actions at {sandbox.bridge_url}/webhook (endpoints.yml{_token_note(sandbox)}) and",
            f"    post bot messages to http://localhost:{RASA_CALLBACK_PORT}/bot (credentials.yml"
            " callback url)",
        ]
    else:
        lines.append(
            "  bot: the built-in demo bot, a stand-in for Rasa (set RASA_URL to use yours)"
        )
    lines += [
        f"  8x8: the simulator ({sandbox.config.api} API) at {sandbox.sim.base_url}, with demo"
        " credentials made up for this run",
        f"  bridge: {sandbox.bridge_url} (8x8 webhook /8x8/events, actions /webhook), embedded"
        " store",
        "Ctrl-C stops it.",
    ]
    return lines
