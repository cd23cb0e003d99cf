"""How long one firing of a partition's timers holds Redis, with a backlog and with none.

    python -m bench.fire_backlog [--timers 3400] [--calls 10] [--redis-url URL]

After an outage a partition may find thousands of timers overdue; each call of
`RedisStore.fire_timers` (the `FIRE_TIMERS` script: one script, so Redis does nothing else
meanwhile) fires at most 100 of them into the stream. This arms `--timers` overdue timers over
as many conversations of partition 0 (16 partitions, as `serve` runs by default), then times
`--calls` calls, and 200 calls with nothing due (what every partition pays each
`timer_poll_s`). The time is the caller's, one call at a time on an idle Redis: close to what
the script holds Redis for. Keys under a fresh prefix, deleted after.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bench.run import PARTITIONS, cleanup, run_prefix
from bridge.handoff import TimerFired, TimerKind
from bridge.ids import ConversationId
from bridge.store import RedisStore, open_store
from bridge.store.base import partition_of

OWNER = "bench-fire-backlog"


async def arm_backlog(store: RedisStore, timers: int) -> None:
    """`timers` user-silence timers, long overdue, one per conversation of partition 0."""
    armed, n = 0, 0
    while armed < timers:
        conversation = ConversationId(f"conv-{n}")
        n += 1
        if partition_of(conversation, PARTITIONS) == 0:
            timer = TimerFired(TimerKind.USER_SILENCE, conversation, 1, 1_000 + armed)
            await store.arm_timer(0, timer)
            armed += 1


async def timed_ms(store: RedisStore, now_ms: int, calls: int) -> list[float]:
    spent = []
    for _ in range(calls):
        start = time.perf_counter()
        await store.fire_timers(0, now_ms, OWNER)
        spent.append((time.perf_counter() - start) * 1000)
    return spent


async def main(args: argparse.Namespace) -> None:
    prefix = run_prefix()
    store = await open_store(args.redis_url, prefix=prefix, partitions=PARTITIONS)
    try:
        await arm_backlog(store, args.timers)
        assert await store.acquire_partition(0, OWNER, 60_000)
        backlog = await timed_ms(store, 10**13, args.calls)
        idle = await timed_ms(store, 0, 200)
        print(f"{args.timers} overdue timers, 100 fired per call: "
              f"median {statistics.median(backlog):.2f} ms (min {min(backlog):.2f}, "
              f"max {max(backlog):.2f}) over {args.calls} calls")  # fmt: skip
        print(f"nothing due: median {statistics.median(idle):.3f} ms per call")
    finally:
        await cleanup(store.redis, prefix)
        await store.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timers", type=int, default=3_400)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
