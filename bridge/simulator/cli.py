"""`handoff-bridge simulator` / `python -m bridge.simulator`: serve until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from collections.abc import Sequence

from bridge import logs
from bridge.errors import ConfigError
from bridge.settings import Settings, load_settings
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.simulator import Simulator, running_simulator

DEFAULT_PORT = 8088
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _banner(sim: Simulator) -> list[str]:
    config = sim.config
    lines = [
        f"8x8 simulator ({config.api} events) listening on {sim.base_url}",
        f"  webhook events go to {sim.webhook_url or '(nowhere yet: POST /_sim/webhook-url)'}",
        f"  desk control API: {sim.base_url}/_sim/conversations",
        "Point the bridge at it:",
        f"  EIGHTBYEIGHT_BASE_URL={sim.base_url}",
        f"  EIGHTBYEIGHT_API={config.api}",
    ]
    if config.demo_values_made_up:
        values = {
            "EIGHTBYEIGHT_API_KEY": config.api_key,
            "EIGHTBYEIGHT_API_SECRET": config.api_secret,
            "EIGHTBYEIGHT_TENANT_ID": config.tenant_id,
            "EIGHTBYEIGHT_CHANNEL_ID": config.channel_id,
        }
        lines.append("  (demo values, the same on every start, as these were not set:)")
        lines += [f"  {name}={values[name]}" for name in config.made_up if name in values]
    if config.rtm_made_up:  # an operator's own secret is never printed
        lines += [
            "  optional, for queue figures and the Gateway agent's name (Real-time Metrics API):",
            f"  EIGHTBYEIGHT_RTM_CLIENT_ID={config.rtm_client_id}",
            f"  EIGHTBYEIGHT_RTM_CLIENT_SECRET={config.rtm_client_secret}",
        ]
    lines.append("Ctrl-C stops it.")
    return lines


async def _serve(config: SimulatorConfig, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
        # SIGINT too: started in the background by a shell, it inherits SIGINT ignored, and
        # Python's KeyboardInterrupt would never come.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    async with running_simulator(config, host, port) as sim:
        print("\n".join(_banner(sim)), flush=True)
        if host not in LOOPBACK:
            print(
                f"WARNING: listening on {host}: anyone who can reach it can drive the desk "
                "control API (/_sim/ has no authentication).",
                file=sys.stderr,
                flush=True,
            )
        await stop.wait()


def run(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    webhook_url: str | None = None,
    settings: Settings | None = None,
    retry_delays: tuple[float, ...] | None = None,
) -> int:
    """Serve the simulator until Ctrl-C or SIGTERM. Returns the exit status: 0, or 2 with a
    one-line reason on stderr when it cannot start (bad settings, port taken)."""
    try:
        settings = settings or load_settings()
        config = SimulatorConfig.from_settings(settings, webhook_url=webhook_url)
        if retry_delays is not None:
            config = dataclasses.replace(config, delivery_retry_delays=retry_delays)
    except (ConfigError, ValueError) as exc:
        print(f"handoff-bridge simulator: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, host, port))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"handoff-bridge simulator: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="handoff-bridge simulator",
        description="Run the 8x8 simulator: both 8x8 chat APIs, signed webhooks, an agent desk.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0: any free one)")
    parser.add_argument("--webhook-url", help="where to send events (default: the local bridge)")
    add_retry_delays(parser)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"handoff-bridge simulator: {exc}", file=sys.stderr)
        return 2
    # Logging is the entry point's to set up (`handoff-bridge simulator` does it too), not run()'s.
    logs.configure(settings.log_level, id_key=settings.log_id_secret())
    return run(args.host, args.port, args.webhook_url, settings, retry_delays=args.retry_delays)


def retry_delays(text: str) -> tuple[float, ...]:
    """`0.2,0.5,1` as seconds; empty: no retry (one attempt, then the event is given up)."""
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of seconds: {text!r}") from None
    if any(not (d >= 0 and d < float("inf")) for d in delays):
        raise argparse.ArgumentTypeError("delays must be non-negative seconds")
    return delays


def add_retry_delays(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retry-delays", type=retry_delays, default=None, metavar="S,S,...",
        help="pauses before each webhook retry (default 0.2,0.5,1,2,4); '' gives up after one "
        "attempt",
    )  # fmt: skip
