"""CPU per request through the store's line (bridge/store/line.py), user and system apart.

    python -m bench.line_cpu [one|two|store] [--requests N] [--runs R] [--checkout PATH]

one: Line.execute of an EVALSHA (as bench.commands); two: a batch of two (EVALSHA, HGETALL), as
claim-and-begin sends; store: a script through RedisStore._run, as the hot path calls them.
16 callers at once (`--callers`; 1: each request alone, as at a paced load), against the Redis
at --redis-url. --checkout runs another checkout's
`bridge` (main, for a before) instead of the installed one.

Wall-clock CPU figures move with the machine's load; for a stable before/after, count the
instructions at two sizes under callgrind and take the difference per request:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.line_cpu one --requests 2000 --runs 1   # then 8000: (b - a) / 6000
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import resource
import sys
from collections.abc import Awaitable, Callable
from typing import Any

CALLERS = 16


async def cpu_per_request(
    call: Callable[[], Awaitable[object]], n: int, callers: int = CALLERS
) -> tuple[float, float]:
    """µs of this process's user and system CPU per call, `n` calls by `callers` at once."""

    async def caller(k: int) -> None:
        for _ in range(k):
            await call()

    before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(caller(n // callers) for _ in range(callers)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (
        (after.ru_utime - before.ru_utime) / n * 1e6,
        (after.ru_stime - before.ru_stime) / n * 1e6,
    )


async def measure(
    url: str, mode: str, n: int, runs: int, callers: int = CALLERS
) -> list[tuple[float, float]]:
    embedded = importlib.import_module("bridge.store.embedded")
    redis_store = importlib.import_module("bridge.store.redis_store")
    client = embedded.redis_client(url)
    store = redis_store.RedisStore(client, prefix="bench:line_cpu:")
    line = store.line
    assert line is not None, "one Redis server, not a Cluster"
    sha = await client.script_load("return 1")
    key = store.keys.relays()
    sides: dict[str, Callable[[], Awaitable[Any]]] = {
        "one": lambda: line.execute("EVALSHA", sha, 1, "bench:commands"),
        "two": lambda: line.batch([("EVALSHA", sha, 1, "bench:commands"), ("HGETALL", key)]),
        "store": lambda: store._run("relay_heartbeat", [key], ["bench", 60_000]),
    }
    call = sides[mode]
    await cpu_per_request(call, 2000, callers)  # warm: the connection, the scripts
    figures = [await cpu_per_request(call, n, callers) for _ in range(runs)]
    await client.delete(key)
    await store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", default="one", choices=["one", "two", "store"])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--requests", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--checkout", help="a checkout whose bridge to run")
    parser.add_argument(
        "--callers", type=int, default=CALLERS, help="at once (1: each request alone, as paced)"
    )
    args = parser.parse_args()
    if args.checkout:  # ahead of the editable install's finder, which would win over sys.path
        sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
        sys.path.insert(0, args.checkout)
    figures = asyncio.run(
        measure(args.redis_url, args.mode, args.requests, args.runs, args.callers)
    )
    user = sorted(u for u, _ in figures)
    system = sorted(s for _, s in figures)
    print(
        f"{args.mode}: user "
        + ", ".join(f"{u:.1f}" for u in user)
        + " | system "
        + ", ".join(f"{s:.1f}" for s in system)
        + " µs CPU per request"
    )


if __name__ == "__main__":
    main()
