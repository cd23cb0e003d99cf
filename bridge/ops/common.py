"""What every operator command shares: exit codes, settings, the store, output (table or JSON)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from bridge import logs
from bridge.errors import ConfigError, StoreUnavailable, UpstreamError
from bridge.settings import Settings, load_settings

if TYPE_CHECKING:
    from bridge.store.redis_store import RedisStore


class Exit(IntEnum):
    """Exit codes of the operator commands (the README lists them)."""

    OK = 0
    PROBLEM = 1  # `check` found a problem; a command did only part of its work
    CONFIG = 2  # settings missing or invalid (as `serve`)
    STORE = 3  # Redis cannot be reached
    NOT_FOUND = 4  # no such sender (live handoff) or dead letter
    UPSTREAM = 5  # 8x8 (or Rasa) unreachable or refused the request


class Failed(Exception):
    """Ends a command with a plain-words message and an exit code."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code


EXIT_CODES = (
    "exit codes: 0 done (all checks OK); 1 a check failed or only part was done; "
    "2 settings or arguments invalid; 3 Redis unreachable; 4 no such sender or dead letter; "
    "5 8x8 (or Rasa) unreachable or refused"
)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def settings_for(*, needs_8x8: bool) -> Settings:
    settings = load_settings()
    if needs_8x8:
        settings.check_required()
    # Sender ids printed as `log_id` must hash as `serve` hashes them in its logs.
    logs.set_id_key(settings.log_id_secret())
    return settings


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[RedisStore]:
    """The store `serve` uses. Only a real Redis: the embedded store lives inside one process,
    so a separate command could never see it."""
    from bridge.store import open_store

    if not settings.redis_url:
        raise Failed(Exit.CONFIG, "REDIS_URL is unset: the commands read the Redis `serve` uses")
    store = await open_store(
        settings.redis_url, prefix=settings.redis_key_prefix, partitions=settings.relay_partitions
    )
    try:
        yield store
    finally:
        await store.close()


def run(
    command: Callable[[argparse.Namespace], Coroutine[Any, Any, tuple[Exit, Any, str]]],
    args: argparse.Namespace,
) -> int:
    """Run a command: it returns (exit code, JSON-able result, text); errors become a message
    and their exit code. Secrets never appear: messages name variables, not values."""
    as_json = bool(getattr(args, "json", False))
    code: Exit
    data: Any
    text: str
    try:
        code, data, text = asyncio.run(command(args))
    except Failed as exc:
        code, data, text = exc.code, {"error": str(exc)}, f"error: {exc}"
    except ConfigError as exc:
        code, data, text = Exit.CONFIG, {"error": str(exc)}, f"configuration error: {exc}"
    except StoreUnavailable as exc:
        code, data, text = Exit.STORE, {"error": str(exc)}, f"error: {exc}"
    except UpstreamError as exc:
        code, data, text = Exit.UPSTREAM, {"error": str(exc)}, f"error: {exc}"
    # A failure's message goes to stderr (also with --json, where stdout still gets the JSON).
    out = sys.stderr if isinstance(data, dict) and set(data) == {"error"} else sys.stdout
    if as_json:
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    if not as_json or out is sys.stderr:
        print(text, file=out)
    return int(code)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, a rule under the headers; "(none)" for no rows."""
    if not rows:
        return "(none)"
    cells = [[str(h) for h in headers], *[["" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def ago(ms: int | None, now_ms: int | None = None) -> str:
    """A duration since `ms` in words an operator reads at a glance: 45s, 12m, 3h, 2d."""
    if not ms:
        return ""
    seconds = max(0, ((now_ms or int(time.time() * 1000)) - ms) // 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def parse_duration(text: str) -> int:
    """`30d`, `12h`, `15m`, `90s` (or plain seconds) as milliseconds; argparse's type."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    value = text.strip().lower()
    number, unit = (value[:-1], value[-1]) if value[-1:] in units else (value, "s")
    try:
        amount = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 30d, 12h, 15m)") from None
    if amount < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return int(amount * units[unit] * 1000)
