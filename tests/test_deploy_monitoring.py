"""The Grafana dashboard and the Prometheus config in deploy/ name metrics the bridge exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from bridge.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _exported() -> set[str]:
    """Series names of every metric, observed yet or not (a labelled one has no samples yet)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bhandoff_[a-z_]+", e)}
    assert used and used <= _exported(), used - _exported()
    for funnel in ("handoff_escalations_total", "handoff_time_to_agent_seconds_bucket",
                   "handoff_abandoned_waits_total", "handoff_transfers_total",
                   "handoff_returns_to_bot_total", "handoff_recovered_messages_total",
                   "handoff_outbox_retries_total", "handoff_dead_letters_total"):  # fmt: skip
        assert funnel in used, funnel


def test_prometheus_scrapes_metrics_with_a_bearer_token_file() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
