"""One user's Rasa conversation stalls: what the other users of the bridge see meanwhile.

    python -m bench.stall [--api gateway|chat-v2] [--rate 300] [--seconds 6] [--hold-s 3]
                          [--held 4] [--rounds 3] [--out PATH]

Rasa serializes a conversation's calls behind a lock (a slow action holds a push up to its
timeout, `specs/rasa-integration.md`), so a push into one user's conversation can wait seconds
while every other user's would go through at once. This runs `serve` (verification on, 16
partitions, as `bench.run`) against the stand-in with `--held` senders held from the start of
a paced phase (signed agent messages round-robin over 256 conversations, `--rate` ev/s) for
`--hold-s` seconds, then released. It reports the latency (arrival at the stand-in minus the
event's scheduled send time) of everyone else's events, p50 / p99 / max, and how many of them
arrived later than the hold (each was held up by a stranger's stall), median over the rounds.
Every event must arrive, once, in order per conversation (exit code 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench import load, phases, procs
from bench.run import PARTITIONS, cleanup, run_prefix, serve_env, sim_config
from bench.stats import check_integrity, percentile
from bridge.simulator import running_simulator
from bridge.store import open_store

CONVERSATIONS = 256


async def _post(stand_in: procs.Process, path: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(stand_in.url + path) as r:
        r.raise_for_status()


async def stalled_phase(
    serve: procs.Process, stand_in: procs.Process, events: list[load.Event], rate: float,
    held: list[str], hold_s: float,
) -> dict[str, Any]:  # fmt: skip
    await phases.reset(stand_in)
    for sender in held:
        await _post(stand_in, f"/_bench/hold/{sender}")

    async def release_later() -> None:
        await asyncio.sleep(hold_s)
        await _post(stand_in, "/_bench/release")

    release = asyncio.create_task(release_later())
    sent = await load.paced(serve.url + "/8x8/events", events, rate)
    await release
    await phases.wait_for_pushes(stand_in, len(events))
    got = await phases.arrivals(stand_in)
    integrity = check_integrity((e.text for e in events), [(s, t) for s, t, _ in got])
    others = [at - sent.times[t] for s, t, at in got if t in sent.times and s not in held]
    return {
        "others": len(others),
        "p50_ms": 1000 * percentile(others, 50),
        "p99_ms": 1000 * percentile(others, 99),
        "max_ms": 1000 * max(others),
        "late": sum(1 for lat in others if lat > hold_s / 2),
        **integrity.as_dict(),
    }


async def main(args: argparse.Namespace) -> int:
    redis_url = "redis://127.0.0.1:6379/0"
    redis = aioredis.Redis.from_url(redis_url)
    stand_in = procs.stand_in()
    await stand_in.start()
    prefix = run_prefix()
    results: list[dict[str, Any]] = []
    try:
        async with running_simulator(sim_config(args.api)) as sim:
            env = serve_env(args.api, sim.base_url, redis_url, prefix, stand_in.url, "INFO")
            serve = procs.serve(env, Path(tempfile.mkdtemp()) / "serve.log")
            await serve.start()
            store = await open_store(redis_url, prefix=prefix, partitions=PARTITIONS)
            try:
                pairs = [(f"c-{i}", f"s-{i}") for i in range(CONVERSATIONS)]
                await phases.seed_with_agent(store, pairs)
                held = [sender for _, sender in pairs[: args.held]]
                seq = 0
                for rnd in range(args.rounds + 1):  # the first warms up, not counted
                    n = int(args.rate * args.seconds)
                    events = load.agent_messages(sim, args.api, pairs, n, seq)
                    seq += -(-n // len(pairs))
                    result = await stalled_phase(serve, stand_in, events, args.rate, held,
                                                 args.hold_s)  # fmt: skip
                    if rnd:
                        results.append(result)
                        print(json.dumps(result), flush=True)
            finally:
                await store.close()
                serve.stop()
    finally:
        stand_in.stop()
        await cleanup(redis, prefix)
        await redis.aclose()
    summary = {k: statistics.median(r[k] for r in results)
               for k in ("p50_ms", "p99_ms", "max_ms", "late", "others")}  # fmt: skip
    print(f"{args.held} of {CONVERSATIONS} senders held {args.hold_s:g} s at {args.rate:g} ev/s: "
          f"the others' p50 {summary['p50_ms']:.1f} ms, p99 {summary['p99_ms']:.1f} ms, "
          f"max {summary['max_ms']:.0f} ms; {summary['late']:.0f} of {summary['others']:.0f} "
          f"later than half the hold (median of {len(results)} rounds)")  # fmt: skip
    if args.out:
        _write(Path(args.out), {"args": vars(args), "rounds": results})
    bad = any(r["lost"] or r["duplicated"] or r["reordered"] or r["unexpected"] for r in results)
    return 1 if bad else 0


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1))


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--api", default="gateway", choices=("gateway", "chat-v2"))
    p.add_argument("--rate", type=float, default=300.0)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--hold-s", type=float, default=3.0)
    p.add_argument("--held", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="")
    return p.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_args())))
