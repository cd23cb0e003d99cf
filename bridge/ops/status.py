"""`handoff-bridge status`: live handoffs, relay backlog and lag, live relays, outbox, dead
letters, read from the store's indexes (never KEYS or SCAN)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bridge.handoff import Handoff
from bridge.logs import mask_sender
from bridge.ops.common import (
    EXIT_CODES,
    Exit,
    add_json_flag,
    ago,
    iso,
    open_redis,
    run,
    settings_for,
    table,
)


def add(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        epilog=EXIT_CODES,
        help="live handoffs, relay backlog and lag, live relays, outbox, dead letters",
        description="What the bridge is doing now, from the Redis `serve` uses.",
    )
    add_json_flag(p)
    p.add_argument("--all-partitions", action="store_true",
                   help="list every partition, not only those with a backlog or dead letters")  # fmt: skip
    p.set_defaults(func=lambda args: run(status, args))


async def status(args: argparse.Namespace) -> tuple[Exit, Any, str]:
    from bridge.store import admin

    settings = settings_for(needs_8x8=False)
    now = int(time.time() * 1000)
    async with open_redis(settings) as store:
        await store.ping()
        live = await admin.live_handoffs(store)
        parts = await admin.partitions(store)
        relays = await admin.live_relays(store)
        outbox = await admin.outbox_depths(store)
    handoffs = []
    for sender, record in live:
        h = Handoff.from_fields(record.fields)
        handoffs.append({
            "sender": sender, "log_id": mask_sender(sender), "conversation": h.conversation_id,
            "state": h.state.value, "agent": h.agent_name or h.agent_id, "since": iso(h.since_ms),
            "waiting_s": (now - h.since_ms) // 1000 if h.since_ms else None,
        })  # fmt: skip
    partitions = [
        {"partition": v.partition, "backlog": v.backlog, "held": v.held, "dead_letters": v.dead,
         "lag_s": (now - v.oldest_ms) / 1000 if v.oldest_ms else 0.0, "owner": v.owner}
        for v in parts
    ]  # fmt: skip
    data = {
        "handoffs": handoffs,
        "partitions": partitions,
        "relays": [{"owner": o, "lapses_in_s": (t - now) / 1000} for o, t in relays],
        "outbox": {"senders": len(outbox), "messages": sum(outbox.values()), "by_sender": outbox},
        "dead_letters": sum(v.dead for v in parts),
        "backlog": sum(v.backlog for v in parts),
    }
    return Exit.OK, data, _text(data, handoffs, partitions, now, args.all_partitions)


def _text(
    data: dict[str, Any], handoffs: list[dict[str, Any]], partitions: list[dict[str, Any]],
    now: int, every: bool,
) -> str:  # fmt: skip
    rows = [
        (h["sender"], h["conversation"], h["state"], h["agent"] or "-",
         ago(now - h["waiting_s"] * 1000, now) if h["waiting_s"] is not None else "")
        for h in handoffs
    ]  # fmt: skip
    shown = [p for p in partitions if every or p["backlog"] or p["dead_letters"] or p["held"]]
    parts = [
        (p["partition"], p["backlog"], f"{p['lag_s']:.1f}s", p["held"], p["dead_letters"],
         p["owner"] or "(no relay)")
        for p in shown
    ]  # fmt: skip
    relays = ", ".join(r["owner"] for r in data["relays"]) or "none"
    out = data["outbox"]
    return "\n".join([
        f"Live handoffs: {len(handoffs)}",
        table(["SENDER", "CONVERSATION", "STATE", "AGENT", "SINCE"], rows),
        "",
        f"Relay: backlog {data['backlog']} event(s) in {len(partitions)} partitions"
        + ("" if every else " (partitions with nothing waiting not shown)"),
        table(["PARTITION", "BACKLOG", "LAG", "HELD", "DEAD", "RELAY"], parts),
        "",
        f"Live relays: {len(data['relays'])} ({relays})",
        f"Outbox: {out['messages']} message(s) waiting for 8x8, from {out['senders']} sender(s)",
        f"Dead letters: {data['dead_letters']} (handoff-bridge dead-letters list)",
    ])  # fmt: skip
