"""`handoff-bridge`: the command line (bridge-contract.md, "Install and run")."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from bridge import __version__, logs
from bridge.errors import ConfigError
from bridge.settings import Settings, load_settings

log = logging.getLogger("bridge")


def _settings_or_exit(*, for_serve: bool) -> Settings:
    try:
        settings = load_settings()
        if for_serve:
            settings.check_for_serve()
    except ConfigError as exc:
        # One line, naming the variable; never the value (it may be a secret).
        print(f"handoff-bridge: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def cmd_serve(_args: argparse.Namespace) -> int:
    settings = _settings_or_exit(for_serve=True)
    logs.configure(settings.log_level, id_key=settings.log_id_secret())
    if not settings.redis_url:
        log.warning(
            "embedded_store",
            extra={"detail": "REDIS_URL is unset: state lives in this process only and is lost on "
                   "restart; run exactly one serve process (set REDIS_URL in production)"},
        )  # fmt: skip
    from bridge.web.server import serve  # imported late: keeps `--help` fast

    asyncio.run(serve(settings))
    return 0


def cmd_simulator(args: argparse.Namespace) -> int:
    settings = _settings_or_exit(for_serve=False)
    logs.configure(settings.log_level, id_key=settings.log_id_secret())
    from bridge.simulator.cli import run

    return run(host=args.host, port=args.port, webhook_url=args.webhook_url, settings=settings,
               retry_delays=args.retry_delays)  # fmt: skip


def cmd_sandbox(args: argparse.Namespace) -> int:
    settings = _settings_or_exit(for_serve=False)
    from bridge.sandbox import run

    return run(settings=settings, host=args.host, port=args.port, api=args.api)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="handoff-bridge",
        description="Hand a Rasa conversation to a human agent in 8x8, and back.",
    )
    parser.add_argument("--version", action="version", version=f"handoff-bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "serve", help="run the service (Rasa action endpoint + 8x8 webhook + relay)"
    ).set_defaults(func=cmd_serve)
    sim = sub.add_parser("simulator", help="run the 8x8 simulator alone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8088)
    sim.add_argument("--webhook-url", default=None, help="where to send signed webhook events")
    from bridge.simulator.cli import add_retry_delays

    add_retry_delays(sim)
    sim.set_defaults(func=cmd_simulator)
    box = sub.add_parser(
        "sandbox", help="the whole handoff on this machine, in a browser (no accounts needed)"
    )
    box.add_argument("--host", default="127.0.0.1", help="where the page listens")
    box.add_argument("--port", type=int, default=8000, help="the page's port (0: any free one)")
    box.add_argument("--api", choices=["gateway", "chat-v2"], default="gateway",
                     help="which 8x8 API the simulated contact center speaks")  # fmt: skip
    box.set_defaults(func=cmd_sandbox)
    from bridge import ops  # the operator commands (check, status, end, ...)

    ops.register(sub)

    from bridge.onboard import command as onboard

    bot = sub.add_parser("add-to-bot", help="add the handoff to a Rasa 3.x project, in place")
    onboard.add_arguments(bot)
    bot.set_defaults(func=onboard.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
