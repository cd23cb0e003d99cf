"""One measured phase against one side (the bridge or the ceiling), and the memory phase."""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench import load
from bench.procs import Process, cpu_seconds
from bench.stats import check_integrity, percentile
from bridge.handoff import ArmTimer, Escalated, Handoff, State, Timing, on_action
from bridge.ids import ConversationId, SenderId
from bridge.settings import Settings
from bridge.store.base import Store, partition_of
from bridge.store.keys import ENQUEUED_AFTER_DELIVERY_MS

DRAIN_TIMEOUT_S = 60.0


async def reset(stand_in: Process) -> None:
    async with aiohttp.ClientSession() as http, http.post(stand_in.url + "/_bench/reset") as r:
        r.raise_for_status()


async def _count(http: aiohttp.ClientSession, stand_in: Process) -> int:
    async with http.get(stand_in.url + "/_bench/count") as r:
        return int((await r.json())["pushes"])


async def wait_for_pushes(stand_in: Process, n: int, within_s: float = DRAIN_TIMEOUT_S) -> int:
    """Poll the stand-in (another process) until it has `n` pushes or time runs out."""
    deadline = time.monotonic() + within_s
    async with aiohttp.ClientSession() as http:
        while (got := await _count(http, stand_in)) < n and time.monotonic() < deadline:  # noqa: ASYNC110 - another process
            await asyncio.sleep(0.02)
    return got


async def arrivals(stand_in: Process) -> list[tuple[str, str, float]]:
    async with aiohttp.ClientSession() as http, http.get(stand_in.url + "/_bench/arrivals") as r:
        return [(s, t, float(at)) for s, t, at in await r.json()]


async def run_phase(
    kind: str, side: Process, stand_in: Process, events: list[load.Event], *,
    in_flight: int = 64, rate: float = 0.0, others: dict[str, int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Send `events` (saturated or paced), wait until the stand-in has them all, and measure
    end-to-end rate, latency, the side's CPU per event and the integrity of what arrived.
    `others`: processes (name: pid) whose CPU per event over the phase is reported beside the
    side's (Redis, the stand-in: they share the machine's two cores with the side), with this
    process's own as "runner"."""
    await reset(stand_in)
    url = side.url + "/8x8/events"
    # The runner's heap (every signed event of the run, the results) out of the collector's
    # walks while it sends: a full collection over it paused the sender ~50 ms, late sends
    # counted as latency of whichever side was running. Nor any collection while it sends:
    # what a phase allocates still drew a full collection of 11-42 ms about 10 s into a 12 s
    # paced phase, a burst of 80-150 late events on either side (seen with gc.callbacks),
    # as the stand-in's did before it stopped collecting mid-phase. Collected after it.
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        cpu_before = cpu_seconds(side.pid)
        shared_before = _shared_cpu(others)
        if kind == "saturated":
            sent = await load.saturated(url, events, in_flight)
        else:
            sent = await load.paced(url, events, rate)
        await wait_for_pushes(stand_in, len(events))
        cpu = cpu_seconds(side.pid) - cpu_before
        shared = _shared_cpu(others)
    finally:
        gc.enable()
        gc.unfreeze()
    got = await arrivals(stand_in)
    integrity = check_integrity((e.text for e in events), [(s, t) for s, t, _ in got])
    latencies = [at - sent.times[t] for _, t, at in got if t in sent.times]
    last = max((at for _, _, at in got), default=sent.first)
    return {
        "events": len(events),
        "delivered_per_s": len(got) / (last - sent.first) if got else 0.0,
        "answered_per_s": len(events) / (sent.last_answer - sent.first),
        "p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "p99_ms": 1000 * percentile(latencies, 99) if latencies else None,
        "max_ms": 1000 * max(latencies) if latencies else None,
        "cpu_ms_per_event": 1000 * cpu / len(events),
        "others_cpu_ms_per_event": {
            name: round(1000 * (shared[name] - shared_before[name]) / len(events), 3)
            for name in shared
        },
        **(
            {
                "redis_cpu_ms_per_event": 1000
                * (shared["redis"] - shared_before["redis"])
                / len(events)
            }
            if "redis" in shared
            else {}
        ),
        "non_2xx": sent.errors,
        "retried_5xx": sent.retried,
        "rate": rate or None,
        **integrity.as_dict(),
    }


def _shared_cpu(others: dict[str, int] | None) -> dict[str, float]:
    spent = {name: cpu_seconds(pid) for name, pid in (others or {}).items()}
    spent["runner"] = time.process_time()
    return spent


async def seed_with_agent(store: Store, pairs: list[tuple[str, str]]) -> None:
    """Handoffs an agent already holds: each agent message becomes one push into Rasa."""
    for conversation, sender in pairs:
        step = on_action(Handoff(), Escalated(ConversationId(conversation), reopened=False), 0)
        live = replace(step.handoff, state=State.WITH_AGENT, agent_id="agent-1", agent_name="Anna")
        assert await store.save_handoff(SenderId(sender), live.to_fields(), 0)
        await store.link(SenderId(sender), ConversationId(conversation))


def serve_timing() -> Timing:
    """The timers `serve` runs with here: the settings' defaults (the runner sets none)."""
    fields = Settings.model_fields
    return Timing(**{
        f"{kind}_ms": int(fields[f"handoff_{kind}_s"].default) * 1000
        for kind in ("queue_timeout", "queue_reminder", "agent_silence", "user_silence")
    })  # fmt: skip


async def seed_escalated(store: Store, pairs: list[tuple[str, str]]) -> None:
    """What the escalate action leaves: the handoff requested, its queue timers armed (as
    `serve`'s defaults arm them) and the conversation linked."""
    now_ms, timing = int(time.time() * 1000), serve_timing()
    for conversation, sender in pairs:
        cid = ConversationId(conversation)
        step = on_action(Handoff(), Escalated(cid, reopened=False), now_ms, timing)
        for effect in step.effects:
            if isinstance(effect, ArmTimer):
                await store.arm_timer(partition_of(cid, store.partitions), effect.timer)
        assert await store.save_handoff(SenderId(sender), step.handoff.to_fields(), 0)
        await store.link(SenderId(sender), cid)


# A key's kind: its name with the hash tag's id and any event id left out.
_TAG = re.compile(r"\{([a-z]+):[^}]*\}")
_EVENT_ID = re.compile(r":enq:.*$")  # an enqueued marker names its event id


_CONVERSATION = re.compile(r":msgs:.*$")  # the delivered-message record names its conversation
_CLAIM_BUCKET = re.compile(r":claims:\d+$")  # the webhook's claim hashes name a time bucket
_LIVE_SHARD = re.compile(r"\{handoffs\}:live:\d+$")  # the live-handoff index's shards, as one
_TIMER_SHARD = re.compile(r":timers:\d+$")  # a partition's timer shards, as one


def key_kind(name: str) -> str:
    name = _CONVERSATION.sub(":msgs:<conversation>", name)
    name = _CLAIM_BUCKET.sub(":claims:<bucket>", name)
    name = _LIVE_SHARD.sub("{handoffs}:live:<n>", name)
    name = _TIMER_SHARD.sub(":timers:<n>", name)
    return _EVENT_ID.sub(":enq:<id>", _TAG.sub(lambda m: "{" + m.group(1) + ":*}", name))


async def memory_per_handoff(
    redis: aioredis.Redis, prefix: str, store: Store, sim: Any, api: str,
    serve: Process, stand_in: Process, n: int, tag: str,
) -> dict[str, Any]:  # fmt: skip
    """Live handoffs made as the bridge makes them (escalated, then queued, agent joined and
    one agent message through `serve`); once delivered and settled, MEMORY USAGE of every key
    under the run's prefix (records, mappings, claims, streams, timers, indexes, leases:
    whatever exists), / n."""
    await reset(stand_in)
    pairs = [(f"mem-c-{tag}-{i}", f"mem-s-{tag}-{i}") for i in range(n)]
    await seed_escalated(store, pairs)
    events = load.handoff_lifecycle(sim, api, pairs)
    await load.saturated(serve.url + "/8x8/events", events, 64)
    got = await wait_for_pushes(stand_in, len(events))
    # Steady state: a delivered event's enqueued marker is kept a few seconds after its delivery
    # (bridge/store/keys.py), as an undelivered event's stream entry is; neither is the live
    # handoff's.
    await asyncio.sleep(ENQUEUED_AFTER_DELIVERY_MS / 1000 + 1)
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    previous = -1
    for _ in range(20):  # the last acks land just after the last pushes
        kinds.clear()
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            kind = key_kind(key.decode()[len(prefix) :])
            kinds[kind][0] += 1
            kinds[kind][1] += int(await redis.memory_usage(key, samples=0) or 0)
        total = sum(b for _, b in kinds.values())
        if total == previous:
            break
        previous = total
        await asyncio.sleep(0.3)
    return {
        "handoffs": n,
        "pushes": got,
        "bytes_per_handoff": total / n,
        "keys": {k: {"count": c, "bytes": b} for k, (c, b) in sorted(kinds.items())},
    }
