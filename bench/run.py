"""The relay against the machine's ceiling, measured from outside (docs/performance.md).

    python -m bench.run [--quick] [--rounds N] [--api gateway|chat-v2] [--out PATH] [--no-doc]

The bridge is a real `serve` process receiving agent events signed as 8x8 signs them
(verification on) and relaying them into a Rasa stand-in in another process. The ceiling is a
bare aiohttp process doing one Redis GET and one POST per event into the same stand-in, on the
same Redis. Per API and round, both sides run a saturated phase (c=64) and a paced phase at
the same rate (half the bridge's saturated rate), interleaved ABBA. Prints the table, writes
JSON and regenerates docs/performance.md's section of the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import load, phases, procs, report
from bench.ceiling import ceiling_key
from bridge.simulator import SimulatorConfig, running_simulator
from bridge.store import open_store

APIS = ("gateway", "chat-v2")
PARTITIONS = 16


@dataclass
class Plan:
    rounds: int = 6
    events: int = 5000  # per saturated phase
    paced_s: float = 12.0
    conversations: int = 256
    in_flight: int = 64
    pace: float = 0.5  # the paced rate, as a share of the bridge's saturated rate
    # Uncounted saturated phases of the bridge whose median delivered rate fixes the paced
    # rate: one phase's rate on 2 shared cores is off by a third at times, and so the load.
    calibrations: int = 3
    rate: float = 0.0  # the paced rate in ev/s when set (to compare runs at one load)
    handoffs: int = 1000  # the memory phase
    apis: tuple[str, ...] = APIS
    redis_url: str = "redis://127.0.0.1:6379/0"
    log_level: str = "INFO"
    memory_only: bool = False  # the memory phase alone (no timed phases)
    memory_every_api: bool = True  # else the first API's only (it waits out the markers)


def run_prefix() -> str:
    """A fresh key prefix per run, as short as can be: production's prefix is empty, and every
    byte of it is stored in every key the memory phase counts."""
    return f"b{secrets.token_hex(2)}:"


QUICK = Plan(
    rounds=1, events=600, paced_s=2.5, conversations=128, handoffs=150, memory_every_api=False,
    calibrations=1,
)  # fmt: skip


def serve_env(api: str, sim_url: str, redis_url: str, prefix: str, rasa_url: str,
              log_level: str) -> dict[str, str]:  # fmt: skip
    return {
        "EIGHTBYEIGHT_API": api, "EIGHTBYEIGHT_BASE_URL": sim_url,
        "EIGHTBYEIGHT_API_KEY": "bench-key", "EIGHTBYEIGHT_API_SECRET": "bench-secret",
        "EIGHTBYEIGHT_TENANT_ID": "bench-tenant", "EIGHTBYEIGHT_CHANNEL_ID": "bench-channel",
        "EIGHTBYEIGHT_VERIFY_SIGNATURES": "true", "RASA_URL": rasa_url,
        "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix, "RELAY_PARTITIONS": str(PARTITIONS),
        "EVENT_DEDUPE_TTL_S": "3600", "LOG_LEVEL": log_level,
        # The agent's words alone, as the ceiling pushes them: the integrity check matches the
        # texts that arrive against the texts sent (the default would prefix the agent's name).
        "HANDOFF_AGENT_MESSAGE_FORMAT": "{text}",
    }  # fmt: skip


def sim_config(api: str) -> SimulatorConfig:
    return SimulatorConfig(api_key="bench-key", api_secret="bench-secret",
                           tenant_id="bench-tenant", customer_id="bench-tenant",
                           channel_id="bench-channel", webhook_url=None, api=api)  # type: ignore[arg-type]  # fmt: skip


async def cleanup(redis: aioredis.Redis, prefix: str) -> None:
    batch = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    for i in range(0, len(batch), 500):
        await redis.delete(*batch[i : i + 500])


class Bench:
    def __init__(self, plan: Plan, logs: Path) -> None:
        self.plan = plan
        self.logs = logs
        self.runs: list[dict[str, Any]] = []
        self.memory: dict[str, Any] = {}
        self.calibration: dict[str, list[float]] = {}  # by API: each calibration's delivered/s
        self.seq = 0  # texts stay unique over the whole run
        # The processes that share the cores with the side measured (name: pid), whose CPU per
        # event each phase reports too: what the side makes Redis do is on the machine's bill.
        self.others: dict[str, int] = {}

    def messages(
        self, sim: Any, api: str, pairs: list[tuple[str, str]], n: int
    ) -> list[load.Event]:
        events = load.agent_messages(sim, api, pairs, n, self.seq)
        self.seq += -(-n // len(pairs))
        return events

    async def side(self, name: str, proc: procs.Process, stand: procs.Process, sim: Any,
                   api: str, pairs: list[tuple[str, str]], rate: float, rnd: int) -> float:  # fmt: skip
        p = self.plan
        load_before = os.getloadavg()[0]
        sat = await phases.run_phase("saturated", proc, stand, self.messages(sim, api, pairs, p.events),
                                     in_flight=p.in_flight, others=self.others)  # fmt: skip
        rate = rate or sat["delivered_per_s"] * p.pace
        paced_events = self.messages(sim, api, pairs, max(1, int(rate * p.paced_s)))
        paced = await phases.run_phase("paced", proc, stand, paced_events, rate=rate,
                                       others=self.others)  # fmt: skip
        self.runs.append({"api": api, "side": name, "round": rnd, "saturated": sat,
                          "paced": paced, "loadavg_1m": [load_before, os.getloadavg()[0]]})  # fmt: skip
        _progress(self.runs[-1])
        return rate

    async def calibrate(self, api: str, serve: procs.Process, stand: procs.Process, sim: Any,
                        pairs: list[tuple[str, str]]) -> float:  # fmt: skip
        """The bridge's saturated rate, the median of uncounted phases (which also warm it)."""
        p = self.plan
        rates = self.calibration[api] = []
        for _ in range(max(1, p.calibrations)):
            warm = await phases.run_phase("saturated", serve, stand,
                                          self.messages(sim, api, pairs, p.events), in_flight=p.in_flight)  # fmt: skip
            rates.append(warm["delivered_per_s"])
        return statistics.median(rates)

    async def api(self, api: str, stand: procs.Process, ceiling: procs.Process,
                  redis: aioredis.Redis, ceiling_prefix: str) -> None:  # fmt: skip
        p = self.plan
        prefix = run_prefix()
        async with running_simulator(sim_config(api)) as sim:
            env = serve_env(api, sim.base_url, p.redis_url, prefix, stand.url, p.log_level)
            serve = procs.serve(env, self.logs / f"serve-{api}.log")
            await serve.start()
            store = await open_store(p.redis_url, prefix=prefix, partitions=PARTITIONS)
            try:
                if p.memory_every_api or not self.memory:
                    self.memory[api] = await phases.memory_per_handoff(
                        redis, prefix, store, sim, api, serve, stand, p.handoffs, api
                    )
                if p.memory_only:
                    return
                pairs = [(f"c-{api}-{i}", f"s-{api}-{i}") for i in range(p.conversations)]
                await phases.seed_with_agent(store, pairs)
                for conversation, sender in pairs:
                    await redis.set(ceiling_key(ceiling_prefix, conversation), sender)
                rate = p.rate or await self.calibrate(api, serve, stand, sim, pairs) * p.pace
                await phases.run_phase("saturated", ceiling, stand,
                                       self.messages(sim, api, pairs, p.events // 4), in_flight=p.in_flight)  # fmt: skip
                sides = {"bridge": serve, "ceiling": ceiling}
                for rnd in range(p.rounds):
                    order = ("bridge", "ceiling") if rnd % 2 == 0 else ("ceiling", "bridge")
                    for name in order:
                        await self.side(name, sides[name], stand, sim, api, pairs, rate, rnd)
            finally:
                await store.close()
                serve.stop()
                await cleanup(redis, prefix)


def _progress(run: dict[str, Any]) -> None:
    s, q = run["saturated"], run["paced"]
    others = " ".join(f"{k} {v:.2f}" for k, v in s.get("others_cpu_ms_per_event", {}).items())
    print(f"  {run['api']:8} {run['side']:8} round {run['round']}: "
          f"{s['delivered_per_s']:7.0f} ev/s, cpu {s['cpu_ms_per_event']:.2f} ms/ev ({others}); "
          f"paced {q['rate']:.0f}/s p50 {q['p50_ms']:.1f} ms p99 {q['p99_ms']:.1f} ms; "
          f"lost/dup/reord {s['lost'] + q['lost']}/{s['duplicated'] + q['duplicated']}/"
          f"{s['reordered'] + q['reordered']}; load {run['loadavg_1m'][0]:.1f}",
          flush=True)  # fmt: skip


def cpu_model() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


async def machine(redis: aioredis.Redis) -> dict[str, Any]:
    info = await redis.info("server")
    model = cpu_model()
    return {
        "cores": os.cpu_count(), "cpu": model, "python": sys.version.split()[0],
        "redis": info.get("redis_version"), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "loadavg_start": list(os.getloadavg()),
    }  # fmt: skip


async def run(plan: Plan, logs: Path) -> dict[str, Any]:
    redis = aioredis.from_url(plan.redis_url)
    ceiling_prefix = run_prefix()
    bench = Bench(plan, logs)
    about = await machine(redis)
    stand = procs.stand_in()
    await stand.start()
    bench.others = {"redis": int((await redis.info("server"))["process_id"]), "stand-in": stand.pid}
    ceiling = procs.ceiling(plan.redis_url, ceiling_prefix, stand.url)
    try:
        await ceiling.start()
        for api in plan.apis:
            await bench.api(api, stand, ceiling, redis, ceiling_prefix)
    finally:
        ceiling.stop()
        stand.stop()
        await cleanup(redis, ceiling_prefix)
        await redis.aclose()
    about["loadavg_end"] = list(os.getloadavg())
    return {"machine": about, "plan": asdict(plan), "runs": bench.runs, "memory": bench.memory,
            "calibration": bench.calibration,
            "summary": report.summarize(bench.runs, bench.memory)}  # fmt: skip


def parse(argv: list[str]) -> tuple[Plan, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, small phases (< 1 min)")
    parser.add_argument("--rounds", type=int, help="rounds per API (default 6; ABBA order)")
    parser.add_argument("--api", choices=APIS, help="only this API")
    parser.add_argument("--events", type=int, help="events per saturated phase")
    parser.add_argument("--rate", type=float, help="paced rate, ev/s (default: half the bridge's)")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", Plan.redis_url))
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench/results/latest.json")
    parser.add_argument("--doc", type=Path, default=procs.ROOT / "docs/performance.md")
    parser.add_argument(
        "--section",
        default="latest",
        help="which results section of the doc to regenerate (e.g. before, after)",
    )
    parser.add_argument(
        "--memory-only", action="store_true", help="only Redis per live handoff (no timed phases)"
    )
    parser.add_argument("--handoffs", type=int, help="live handoffs the memory phase makes")
    parser.add_argument("--no-doc", action="store_true", help="leave docs/performance.md alone")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    plan.redis_url = args.redis_url
    if args.rounds:
        plan.rounds = args.rounds
    if args.events:
        plan.events = args.events
    if args.handoffs:
        plan.handoffs = args.handoffs
    if args.rate:
        plan.rate = args.rate
    plan.memory_only = args.memory_only
    if args.api:
        plan.apis = (args.api,)
    return plan, args


def main(argv: list[str] | None = None) -> int:
    plan, args = parse(sys.argv[1:] if argv is None else argv)
    # serve's INFO logs go to a file, as in production (not to a pipe nobody reads).
    logs = Path(tempfile.gettempdir()) / "hbbench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(run(plan, logs))
    if plan.memory_only:
        print(report.memory_breakdown(result))
        return 0
    result["command"] = "python -m bench.run " + " ".join(sys.argv[1:] if argv is None else argv)
    table = report.table(result)
    print(table)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"JSON: {args.out}")
    if not args.no_doc:
        report.update_doc(args.doc, args.section, report.section(result))
        print(f"doc: {args.doc} (section {args.section})")
    return 0 if report.intact(result) else 1


if __name__ == "__main__":
    sys.exit(main())
