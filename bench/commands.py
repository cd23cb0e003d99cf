"""CPU per Redis command: redis-py's client against the store's `Line` (bridge/store/line.py).

    python -m bench.commands [--redis-url URL] [--commands N]

Both run the same EVALSHA of a one-line script, 16 callers at once, in this process, ABBA,
against the same Redis; the figure is this process's CPU time per command (the Redis server's
own time is not counted: it is the same for both).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from bridge.store.embedded import redis_client
from bridge.store.line import Line

CALLERS = 16


async def cpu_per_command(call: Callable[[], Awaitable[object]], n: int) -> float:
    """µs of this process's CPU per call, `n` calls by CALLERS callers at once."""

    async def caller(k: int) -> None:
        for _ in range(k):
            await call()

    start = time.process_time()
    await asyncio.gather(*(caller(n // CALLERS) for _ in range(CALLERS)))
    return (time.process_time() - start) / n * 1e6


async def measure(url: str, n: int) -> dict[str, list[float]]:
    client = redis_client(url)
    assert isinstance(client, aioredis.Redis), "one Redis server, not a Cluster"
    line = Line.of(client)
    sha = await client.script_load("return 1")
    sides: dict[str, Callable[[], Awaitable[object]]] = {
        "client": lambda: client.evalsha(sha, 1, "bench:commands"),
        "line": lambda: line.execute("EVALSHA", sha, 1, "bench:commands"),
    }
    figures: dict[str, list[float]] = {name: [] for name in sides}
    for name in ["client", "line", "line", "client"]:
        figures[name].append(await cpu_per_command(sides[name], n))
    await line.close()
    await client.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--commands", type=int, default=20_000)
    args = parser.parse_args()
    figures = asyncio.run(measure(args.redis_url, args.commands))
    for name, runs in figures.items():
        print(f"{name:>6}: " + ", ".join(f"{f:.1f}" for f in runs) + " µs CPU per EVALSHA")
    ratio = sum(figures["line"]) / sum(figures["client"])
    print(f"line / client: {ratio:.2f}")


if __name__ == "__main__":
    main()
