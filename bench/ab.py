"""Two or more checkouts' `serve` side by side at one load: CPU per event, p50, p99.

    python -m bench.ab CHECKOUT [CHECKOUT ...] [--rate 500] [--seconds 8] [--rounds 6]
                       [--syscalls]

Each checkout's `serve` (its own `bridge`, run from the checkout, the gateway API, verification
on, 16 partitions, as `bench.run`) gets its own key prefix and 256 seeded conversations; one
stand-in serves them all. After a warm-up, the sides take turns (ABBA...) at one paced rate
(`--rate` ev/s for `--seconds`; `--rate 0`: a saturated phase of 5,000 events, c=64, whose
delivered rate is printed in place of p50). For changes whose effect is a few per cent, which
the machine's drift between two `bench.run` runs hides: both sides see the same minutes.
`--syscalls` counts `serve`'s system calls per event instead (`perf stat` on its tracepoints
over one paced phase per side; needs perf and root).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import load, phases, procs
from bench.run import PARTITIONS, cleanup, run_prefix, serve_env, sim_config
from bridge.simulator import running_simulator
from bridge.store import open_store

REDIS_URL = "redis://127.0.0.1:6379/0"
SYSCALLS = ("sendto", "recvfrom", "epoll_wait", "write")


class Side:
    def __init__(self, checkout: str, serve: procs.Process, prefix: str, store: Any,
                 pairs: list[tuple[str, str]]) -> None:  # fmt: skip
        self.checkout, self.serve, self.prefix, self.store, self.pairs = (
            checkout, serve, prefix, store, pairs,
        )  # fmt: skip
        self.results: list[dict[str, Any]] = []


async def start_side(checkout: str, n: int, sim_url: str, stand_in: procs.Process) -> Side:
    prefix = run_prefix()
    env = serve_env("gateway", sim_url, REDIS_URL, prefix, stand_in.url, "INFO")
    env["PYTHONPATH"] = checkout
    serve = procs.serve(env, Path(tempfile.mkdtemp()) / "serve.log")
    procs.ROOT = Path(checkout)  # the cwd `serve` starts in: its `bridge` comes first
    await serve.start()
    store = await open_store(REDIS_URL, prefix=prefix, partitions=PARTITIONS)
    pairs = [(f"c{n}-{k}", f"s{n}-{k}") for k in range(256)]
    await phases.seed_with_agent(store, pairs)
    return Side(checkout, serve, prefix, store, pairs)


async def syscalls(side: Side, stand_in: procs.Process, events: list[load.Event],
                   rate: float) -> dict[str, float]:  # fmt: skip
    out = tempfile.mktemp()
    names = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)
    argv = ["perf", "stat", "-e", names, "-o", out, "-p", str(side.serve.pid)]
    perf = subprocess.Popen(argv)  # noqa: ASYNC220 - a start, not a wait
    await asyncio.sleep(0.5)  # attached
    await phases.run_phase("paced", side.serve, stand_in, events, rate=rate)
    perf.send_signal(2)
    perf.wait()  # it ends at once on SIGINT, writing its counts
    counts = {}
    for line in Path(out).read_text().splitlines():  # noqa: ASYNC240 - a small file, once
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("syscalls:sys_enter_"):
            counts[parts[1].removeprefix("syscalls:sys_enter_")] = int(parts[0].replace(",", ""))
    return {name: count / len(events) for name, count in counts.items()}


async def main(args: argparse.Namespace) -> None:
    redis = aioredis.Redis.from_url(REDIS_URL)
    stand_in = procs.stand_in()
    await stand_in.start()
    others = {"redis": int((await redis.info("server"))["process_id"])}
    sides: list[Side] = []
    seq = 0

    def messages(side: Side, n: int, sim: Any) -> list[load.Event]:
        nonlocal seq
        events = load.agent_messages(sim, "gateway", side.pairs, n, seq)
        seq += -(-n // len(side.pairs))
        return events

    try:
        async with running_simulator(sim_config("gateway")) as sim:
            for n, checkout in enumerate(args.checkouts):
                sides.append(await start_side(checkout, n, sim.base_url, stand_in))
            for side in sides:  # warm-up, not counted
                await phases.run_phase("saturated", side.serve, stand_in,
                                       messages(side, 2000, sim), in_flight=64)  # fmt: skip
            n = int(args.rate * args.seconds)
            if args.syscalls:
                for side in sides:
                    per = await syscalls(side, stand_in, messages(side, n, sim), args.rate)
                    print(side.checkout, " ".join(f"{k} {v:.2f}" for k, v in per.items()),
                          "per event", flush=True)  # fmt: skip
                return
            for rnd in range(args.rounds):
                for side in sides if rnd % 2 == 0 else sides[::-1]:
                    if args.rate:
                        r = await phases.run_phase("paced", side.serve, stand_in,
                                                   messages(side, n, sim), rate=args.rate,
                                                   others=others)  # fmt: skip
                    else:
                        r = await phases.run_phase("saturated", side.serve, stand_in,
                                                   messages(side, 5000, sim), in_flight=64,
                                                   others=others)  # fmt: skip
                        r["p50_ms"] = r["delivered_per_s"]
                    side.results.append(r)
                    redis_ms = r["others_cpu_ms_per_event"]["redis"]
                    print(f"{side.checkout} round {rnd}: cpu {r['cpu_ms_per_event']:.3f} ms/ev "
                          f"(redis {redis_ms:.3f}), "
                          f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f}; lost {r['lost']}",
                          flush=True)  # fmt: skip
    finally:
        for side in sides:
            await side.store.close()
            side.serve.stop()
            await cleanup(redis, side.prefix)
        stand_in.stop()
        await redis.aclose()
    first = "delivered ev/s" if not args.rate else "p50"
    for side in sides:
        rs = side.results
        redis_ms = statistics.median(r["others_cpu_ms_per_event"]["redis"] for r in rs)
        print(f"{side.checkout}: median CPU {statistics.median(r['cpu_ms_per_event'] for r in rs):.3f}"
              f" ms/event (redis {redis_ms:.3f}), {first} {statistics.median(r['p50_ms'] for r in rs):.2f},"
              f" p99 {statistics.median(r['p99_ms'] for r in rs):.2f} ms ({len(rs)} rounds)")  # fmt: skip


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkouts", nargs="+")
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--syscalls", action="store_true")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(_args()))
