"""Where `serve` spends its CPU and where an event waits, under the runner's load.

    python -m bench.profile [--api gateway|chat-v2] [--events N] [--out DIR]

Starts the runner's stand-in and `serve` (verification on), then:
1. a saturated phase under `py-spy record` (flame graph, SVG) and one more for the collapsed
   stacks (`--format raw`), summarized as the inclusive share of the hot functions;
2. the same for a paced phase (half the saturated rate): few commands share a write there and
   each event is worked alone, so its CPU per event is not the saturated one's;
3. a paced phase under `redis-cli MONITOR`: Redis commands per event
   (sent by serve, and run inside its scripts), and each event's timeline: posted -> enqueued
   by the door -> first read by the relay (its attempt counted) -> at the stand-in -> acked.
py-spy needs ptrace rights (root, or kernel.yama.ptrace_scope=0). It pauses serve for each
sample (exact stacks, a little slower serve); the figures of profiled phases are not the table's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench import load, phases, procs
from bench.run import PARTITIONS, cleanup, run_prefix, serve_env, sim_config
from bench.stats import percentile
from bridge.simulator import running_simulator
from bridge.store import open_store

_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_LINE = re.compile(r"^(\d+\.\d+) \[\d+ ([^\]]+)\] (.*)$")


def _pyspy(pid: int, out: Path, fmt: str) -> subprocess.Popen[bytes]:
    argv = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid),
            "--rate", "250", "--format", fmt, "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches before the load starts
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    proc.wait(timeout=60)


def hot_functions(raw: Path, top: int = 40) -> list[tuple[str, float]]:
    """Inclusive share of samples per function (file:function), from collapsed stacks."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = {_frame(f) for f in stack.split(";")}
        for frame in frames:
            inclusive[frame] += n
    return [(f, n / total) for f, n in inclusive.most_common(top)] if total else []


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)": lines merged per function.
    m = re.match(r"(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    path = m.group(2)
    short = (
        path.split("site-packages/")[-1]
        if "site-packages/" in path
        else path.removeprefix(str(procs.ROOT) + "/")
    )
    return f"{m.group(1)} ({short})"


def parse_monitor(path: Path, prefix: str) -> list[tuple[float, str, list[str]]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m or prefix not in m.group(3):
            continue
        args = [
            a.encode().decode("unicode_escape", errors="replace")
            for a in _QUOTED.findall(m.group(3))
        ]
        out.append((float(m.group(1)), m.group(2), args))
    return out


def command_counts(cmds: list[tuple[float, str, list[str]]], events: int) -> dict[str, float]:
    counts: Counter[str] = Counter()
    for _t, client, args in cmds:
        where = "script" if client == "lua" else "serve"
        counts[f"{where}: {args[0].upper()}"] += 1
    return {k: v / events for k, v in sorted(counts.items())}


def timelines(cmds: list[tuple[float, str, list[str]]], prefix: str) -> dict[str, dict[str, float]]:
    """Per event id: enqueued (its XADD), begun (first HINCRBY of its entry), acked (XDEL)."""
    xadds: dict[str, list[tuple[float, str]]] = defaultdict(list)  # stream -> (t, event id)
    begun: dict[str, dict[str, float]] = defaultdict(dict)  # stream -> entry id -> t
    acked: dict[str, float] = {}
    for t, client, args in cmds:
        name = args[0].upper()
        if client == "lua" and name == "XADD":
            xadds[args[1]].append((t, args[args.index("eid") + 1]))
        elif name == "HINCRBY" and args[1].endswith(":attempts"):  # in a script or not
            stream = args[1].rsplit(":", 1)[0] + ":stream"
            begun[stream].setdefault(args[2], t)
        elif client == "lua" and name == "XDEL":
            acked[args[2]] = t
    out: dict[str, dict[str, float]] = {}
    for stream, added in xadds.items():
        entries = sorted(begun[stream], key=lambda e: tuple(int(x) for x in e.split("-")))
        for (t_enq, event_id), entry in zip(added, entries, strict=False):
            out[event_id] = {"enqueued": t_enq, "begun": begun[stream][entry],
                             "acked": acked.get(entry, float("nan"))}  # fmt: skip
    return out


async def profile(api: str, events: int, out: Path, redis_url: str) -> dict[str, Any]:
    prefix = run_prefix()
    redis = aioredis.from_url(redis_url)
    stand = procs.stand_in()
    await stand.start()
    result: dict[str, Any] = {"api": api}
    async with running_simulator(sim_config(api)) as sim:
        env = serve_env(api, sim.base_url, redis_url, prefix, stand.url, "INFO")
        serve = procs.serve(env, None)
        await serve.start()
        store = await open_store(redis_url, prefix=prefix, partitions=PARTITIONS)
        try:
            pairs = [(f"c-{api}-{i}", f"s-{api}-{i}") for i in range(256)]
            await phases.seed_with_agent(store, pairs)
            seq = 0

            def batch(n: int) -> list[load.Event]:
                nonlocal seq
                made = load.agent_messages(sim, api, pairs, n, seq)
                seq += -(-n // len(pairs))
                return made

            warm = await phases.run_phase("saturated", serve, stand, batch(events // 2))
            for fmt, name in (
                ("flamegraph", f"flame-{api}-saturated.svg"),
                ("raw", f"stacks-{api}-saturated.txt"),
            ):
                spy = _pyspy(serve.pid, out / name, fmt)
                result[f"saturated_{fmt}"] = await phases.run_phase(
                    "saturated", serve, stand, batch(events)
                )
                _stop(spy)
            result["hot"] = hot_functions(out / f"stacks-{api}-saturated.txt")
            rate = warm["delivered_per_s"] / 2
            # The paced path too: at half the saturated rate few commands share a write, and
            # each event is worked alone, so its CPU per event is not the saturated one's.
            for fmt, name in (
                ("flamegraph", f"flame-{api}-paced.svg"),
                ("raw", f"stacks-{api}-paced.txt"),
            ):
                spy = _pyspy(serve.pid, out / name, fmt)
                result[f"paced_{fmt}"] = await phases.run_phase(
                    "paced", serve, stand, batch(int(rate * 8)), rate=rate
                )
                _stop(spy)
            result["hot_paced"] = hot_functions(out / f"stacks-{api}-paced.txt")
            result["paced"] = await _monitored(
                serve, stand, batch(int(rate * 10)), rate, prefix, out, result
            )
        finally:
            await store.close()
            serve.stop()
            stand.stop()
            await cleanup(redis, prefix)
            await redis.aclose()
    return result


async def _monitored(serve: procs.Process, stand: procs.Process, events: list[load.Event],
                     rate: float, prefix: str, out: Path, result: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    monitor_log = out / "monitor.txt"
    with monitor_log.open("wb") as f:
        mon = subprocess.Popen(["redis-cli", "monitor"], stdout=f)  # noqa: ASYNC220 - a start
        await asyncio.sleep(0.5)  # MONITOR is on before the first event
        offset = time.time() - time.monotonic()
        await phases.reset(stand)
        sent = await load.paced(serve.url + "/8x8/events", events, rate)
        await phases.wait_for_pushes(stand, len(events))
        got = await phases.arrivals(stand)
        await asyncio.sleep(0.5)  # the last acks
        mon.terminate()
        mon.wait()
    cmds = parse_monitor(monitor_log, prefix)
    monitor_log.unlink()
    result["redis_commands_per_event"] = command_counts(cmds, len(events))
    lines = timelines(cmds, prefix)
    arrived = {text: at + offset for _s, text, at in got}
    stages: dict[str, list[float]] = defaultdict(list)
    for e in events:
        t = lines.get(e.headers["x-8x8-event-id"])
        if t is None or e.text not in arrived:
            continue
        posted = sent.times[e.text] + offset
        stages["posted -> enqueued (door)"].append(t["enqueued"] - posted)
        stages["enqueued -> begun (relay queue)"].append(t["begun"] - t["enqueued"])
        stages["begun -> at stand-in (push)"].append(arrived[e.text] - t["begun"])
        stages["at stand-in -> acked"].append(t["acked"] - arrived[e.text])
        stages["posted -> at stand-in (total)"].append(arrived[e.text] - posted)
    return {
        "rate": rate, "events": len(events), "matched": len(stages["posted -> at stand-in (total)"]),
        "stages_ms": {k: {"p50": 1000 * percentile(v, 50), "p90": 1000 * percentile(v, 90),
                          "p99": 1000 * percentile(v, 99), "max": 1000 * max(v)}
                      for k, v in stages.items() if v},
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--api", choices=("gateway", "chat-v2"), default="gateway")
    parser.add_argument("--events", type=int, default=6000)
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench/results")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    result = asyncio.run(profile(args.api, args.events, args.out, args.redis_url))
    (args.out / f"profile-{args.api}.json").write_text(json.dumps(result, indent=1) + "\n")
    for name, share in result["hot"]:
        print(f"{100 * share:5.1f}%  {name}")
    print(json.dumps({k: result[k] for k in ("redis_commands_per_event", "paced")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
