"""The runner's output: summary (median, spread, ratios), the printed table, the doc section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.stats import spread

# (key, label, phase, field, unit, target for bridge/ceiling)
FIGURES = (
    ("delivered", "delivered, saturated (c=64)", "saturated", "delivered_per_s", "ev/s", "≥ 0.8"),
    ("p99", "p99 at equal paced load", "paced", "p99_ms", "ms", "≤ 3"),
    ("p50", "p50 at equal paced load", "paced", "p50_ms", "ms", ""),
    ("cpu", "CPU per event (serve vs bare relay)", "saturated", "cpu_ms_per_event", "ms", "≤ 1.5"),
    # Beside the targets: what a paced event costs, and what the side makes Redis spend (it
    # shares the two cores); absent from runs before the runner measured it.
    ("paced_cpu", "CPU per event at equal paced load", "paced", "cpu_ms_per_event", "ms", ""),
    (
        "redis_cpu",
        "Redis's CPU per event, saturated",
        "saturated",
        "redis_cpu_ms_per_event",
        "ms",
        "",
    ),
)
CHECKS = ("lost", "duplicated", "reordered", "unexpected", "non_2xx")


def summarize(runs: list[dict[str, Any]], memory: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for api in sorted({r["api"] for r in runs}, key=lambda a: a != "gateway"):
        figures: dict[str, Any] = {}
        for key, _label, phase, field, _unit, _target in FIGURES:
            if any(field not in r[phase] for r in runs if r["api"] == api):
                continue
            per_side: dict[str, Any] = {
                side: spread(
                    [r[phase][field] for r in runs if r["api"] == api and r["side"] == side]
                )
                for side in ("bridge", "ceiling")
            }
            per_side["ratio"] = spread(_paired_ratios(runs, api, phase, field))
            figures[key] = per_side
        mine = [r for r in runs if r["api"] == api]
        out[api] = {
            "figures": figures,
            "paced_rate": mine[0]["paced"]["rate"],
            "events": sum(r[p]["events"] for r in mine for p in ("saturated", "paced")),
            "retried_5xx": sum(
                r[p].get("retried_5xx", 0) for r in mine for p in ("saturated", "paced")
            ),
            "checks": {
                c: sum(r[p][c] for r in mine for p in ("saturated", "paced")) for c in CHECKS
            },
            "memory_bytes_per_handoff": memory.get(api, {}).get("bytes_per_handoff"),
            "loadavg_1m": spread([x for r in mine for x in r["loadavg_1m"]]),
        }
    return out


def _paired_ratios(runs: list[dict[str, Any]], api: str, phase: str, field: str) -> list[float]:
    """bridge / ceiling within each round: the two ran back to back, under the same load from
    the rest of the machine, so the ratio drifts less than either figure."""
    by_round: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["api"] == api:
            by_round.setdefault(r["round"], {})[r["side"]] = r[phase][field]
    return [s["bridge"] / s["ceiling"] for s in by_round.values() if len(s) == 2]


def intact(result: dict[str, Any]) -> bool:
    return all(not any(s["checks"].values()) for s in result["summary"].values())


def _num(value: float, unit: str) -> str:
    if unit == "ev/s":
        return f"{value:,.0f}"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _cell(s: dict[str, float], unit: str) -> str:
    return f"{_num(s['median'], unit)} {unit} ({_num(s['min'], unit)}–{_num(s['max'], unit)})"


def api_table(api: str, summary: dict[str, Any]) -> str:
    rows = [f"| {api} | bridge | ceiling | ratio | target |", "|---|---|---|---|---|"]
    for key, label, _phase, _field, unit, target in FIGURES:
        f = summary["figures"].get(key)
        if f is None:
            continue
        if key in ("p99", "p50"):
            label = f"{label} ({summary['paced_rate']:,.0f} ev/s)"
        ratio = f"{f['ratio']['median']:.2f} ({f['ratio']['min']:.2f}–{f['ratio']['max']:.2f})"
        rows.append(f"| {label} | {_cell(f['bridge'], unit)} | {_cell(f['ceiling'], unit)} "
                    f"| {ratio} | {target} |")  # fmt: skip
    mem = summary["memory_bytes_per_handoff"]
    if mem is not None:
        rows.append(f"| Redis per live handoff | {mem:,.0f} B | | | ≤ 1 KB |")
    checks = summary["checks"]
    rows.append("")
    rows.append(f"{summary['events']:,} events: {checks['lost']} lost, {checks['duplicated']} "
                f"duplicated, {checks['reordered']} reordered, {checks['unexpected']} unexpected, "
                f"{checks['non_2xx']} refused for good; {summary['retried_5xx']} retried after a 5xx "
                f"(as 8x8 retries).")  # fmt: skip
    return "\n".join(rows)


def table(result: dict[str, Any]) -> str:
    return "\n\n".join(api_table(api, s) for api, s in result["summary"].items())


def memory_breakdown(result: dict[str, Any]) -> str:
    """The per-key table of Redis per live handoff, one per API."""
    parts = []
    for api, mem in result["memory"].items():
        rows = [
            f"| key ({api}, {mem['handoffs']} handoffs) | keys | bytes / handoff |",
            "|---|---|---|",
        ]
        for key, v in mem["keys"].items():
            rows.append(f"| `{key}` | {v['count']} | {v['bytes'] / mem['handoffs']:.1f} |")
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def section(result: dict[str, Any]) -> str:
    m = result["machine"]
    plan = result["plan"]
    load = ", ".join(f"{api} {s['loadavg_1m']['min']:.1f}–{s['loadavg_1m']['max']:.1f}"
                     for api, s in result["summary"].items())  # fmt: skip
    head = (
        f"Run {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
        f"Redis {m['redis']}; load average (1 min) during the runs: {load}.\n"
        f"`{result['command']}`: {plan['rounds']} rounds per API (ABBA), "
        f"{plan['events']:,} events per saturated phase, paced phases of {plan['paced_s']:g} s "
        f"over {plan['conversations']} conversations. Each cell: median (min–max) over the "
        f"rounds; ratio: median (min–max) over the rounds of bridge / ceiling within a round."
        f"{_calibration(result)}"
    )
    return "\n\n".join([head, table(result), memory_breakdown(result)])


def _calibration(result: dict[str, Any]) -> str:
    """The bridge's uncounted saturated phases that fixed each API's paced rate (results
    before the twelfth round's runner have none)."""
    rates = result.get("calibration") or {}
    if not rates:
        return ""
    each = "; ".join(
        f"{api} {', '.join(f'{r:,.0f}' for r in runs)} ev/s" for api, runs in rates.items()
    )
    return f" The paced rate is half the median of the bridge's calibration phases: {each}."


def update_doc(doc: Path, name: str, body: str) -> None:
    """Replace the doc's `name` results section (between its markers), or append it."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{body}\n{end}"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + f"\n\n## Results: {name}\n\n{block}\n"
    doc.write_text(text)
