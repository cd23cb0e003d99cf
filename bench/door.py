"""CPU per request of the webhook door: `serve`'s app, signatures on, real Redis, no relay.

    python -m bench.door [--api gateway|chat-v2] [--events 3000] [--runs 3] [--profile FILE]

The app is built as `serve` builds it (settings from the same environment as bench.run's serve,
EIGHTBYEIGHT_VERIFY_SIGNATURES=true, the simulator's key, Redis at --redis-url under a fresh
prefix deleted at the end) and served on loopback in this process. The relay is not started,
the door is told this process owns every partition, as a lone serve's does, and what it hands
to the relay is dropped: what is measured is the door (aiohttp's server, middlewares,
verification, parse, claim, enqueue, answer), not delivery. A child process sends the events
(distinct, signed agent messages, `--concurrency` keep-alive connections), so the sender's CPU
is not counted; this process's user + system CPU (`os.times()`, what `time.process_time()`
sums) over the sending, / events, is the figure. Each run first sends a few
uncounted events (the key fetch, the first connections). `--profile` writes a cProfile of the
measured sends of the last run.

CPU time swings with the machine's load; instruction counts do not. For those, run it under
callgrind with `--callgrind`, which switches instrumentation on for the measured sends only:

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/door.cg \\
        python -m bench.door --events 1000 --runs 1 --callgrind

and divide the `totals:` line of /tmp/door.cg by the events (with `--instr-atstart=no`,
`summary:` reads 0).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

from bench.load import agent_message, sign
from bench.procs import free_port
from bench.run import cleanup, run_prefix, serve_env, sim_config
from bridge.settings import load_settings
from bridge.simulator import Simulator, running_simulator
from bridge.web.app import create_app
from bridge.web.limits import server_options
from bridge.web.runtime import build_runtime

WARMUP = 200


def _events(sim: Simulator, api: str, count: int, tag: str) -> list[dict[str, object]]:
    now_ms = int(time.time() * 1000)
    out: list[dict[str, object]] = []
    for i in range(count):
        conversation = f"door-{i % 256}"
        obj = agent_message(api, conversation, f"{tag} message {i}", now_ms)
        body = json.dumps(obj, separators=(",", ":")).encode()
        out.append({"body": body.decode(), "headers": sign(sim, body, now_ms)})
    return out


async def _send(url: str, events: list[dict[str, Any]], concurrency: int) -> None:
    """The child's side: post every event, `concurrency` at a time; exit 1 on any answer but
    200 accepted."""
    queue = iter(events)
    bad = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def lane() -> None:
            nonlocal bad
            for event in queue:
                async with http.post(
                    url, data=event["body"].encode(), headers=event["headers"]
                ) as r:
                    if r.status != 200 or (await r.json())["result"] != "accepted":
                        bad += 1

        await asyncio.gather(*(lane() for _ in range(concurrency)))
    if bad:
        print(f"{bad} events not accepted", file=sys.stderr)
        raise SystemExit(1)


def _write(events: list[dict[str, object]]) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(events, f)
    return Path(f.name)


async def _drive(url: str, path: Path, concurrency: int) -> None:
    try:
        argv = [sys.executable, "-m", "bench.door", "--send", url, str(path), str(concurrency)]
        proc = await asyncio.create_subprocess_exec(*argv, cwd=Path(__file__).parent.parent)
        if await proc.wait() != 0:
            raise RuntimeError("the sender saw answers other than 200 accepted")
    finally:
        await asyncio.to_thread(path.unlink)


def _callgrind(enabled: bool, state: str) -> None:
    """Instrumentation on or off, when this process runs under
    `valgrind --tool=callgrind --instr-atstart=no`: only the measured sends are counted."""
    if enabled:
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


async def bench(args: argparse.Namespace) -> list[float]:
    figures: list[float] = []
    redis = aioredis.from_url(args.redis_url)
    prefix = run_prefix()
    async with running_simulator(sim_config(args.api)) as sim:
        env = serve_env(
            args.api, sim.base_url, args.redis_url, prefix, "http://127.0.0.1:9", "INFO"
        )
        os.environ.update({**env, "BRIDGE_HOST": "127.0.0.1"})
        settings = load_settings()
        settings.check_for_serve()
        runtime = await build_runtime(settings)
        runtime.door.owns = lambda partition: True
        runtime.door.hand = lambda *_handed: None
        runtime.door.plan = lambda *_planned: None  # no relay here to take a first step
        app = create_app(runtime, run_relay=False)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None,
            **server_options(settings.bridge_client_timeout_s),
        )  # fmt: skip
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        url = f"http://127.0.0.1:{port}/8x8/events"
        try:
            for run in range(args.runs):
                warmup = _write(_events(sim, args.api, WARMUP, f"w{run}"))
                await _drive(url, warmup, args.concurrency)
                events = _write(_events(sim, args.api, args.events, f"r{run}"))
                gc.collect()
                gc.freeze()  # as serve's settled heap
                profiler = (
                    cProfile.Profile(time.process_time)
                    if args.profile and run == args.runs - 1
                    else None
                )
                start = os.times()
                if profiler:
                    profiler.enable()
                _callgrind(args.callgrind, "on")
                await _drive(url, events, args.concurrency)
                _callgrind(args.callgrind, "off")
                if profiler:
                    profiler.disable()
                    profiler.dump_stats(args.profile)
                end = os.times()
                user_us = (end.user - start.user) / args.events * 1e6
                sys_us = (end.system - start.system) / args.events * 1e6
                gc.unfreeze()
                figures.append(user_us + sys_us)
                print(f"run {run + 1}: {user_us + sys_us:.1f} µs CPU per request "
                      f"(user {user_us:.1f}, system {sys_us:.1f})", flush=True)  # fmt: skip
        finally:
            await runner.cleanup()
            await cleanup(redis, prefix)
            await redis.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=["gateway", "chat-v2"], default="gateway")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--profile", default=None, help="cProfile output of the last run")
    parser.add_argument("--callgrind", action="store_true",
                        help="under callgrind (--instr-atstart=no): count the measured sends only")  # fmt: skip
    parser.add_argument("--send", nargs=3, metavar=("URL", "FILE", "C"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        events = json.loads(Path(args.send[1]).read_text())
        asyncio.run(_send(args.send[0], events, int(args.send[2])))
        return
    figures = asyncio.run(bench(args))
    print(
        f"{args.api}, {args.events} events x {len(figures)} runs: median "
        f"{statistics.median(figures):.1f} µs CPU per request "
        f"(min {min(figures):.1f}, max {max(figures):.1f})"
    )


if __name__ == "__main__":
    main()
