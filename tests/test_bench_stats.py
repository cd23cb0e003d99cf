"""The benchmark runner's own arithmetic: percentiles, spread, and the delivery check."""

from __future__ import annotations

from typing import Any

import pytest

from bench.phases import key_kind
from bench.report import _calibration, _paired_ratios, api_table, summarize
from bench.stats import check_integrity, event_text, percentile, spread


def test_percentile_is_an_observed_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0, 1.0, 3.0], 50) == 3.0  # unsorted input
    with pytest.raises(ValueError):
        percentile([], 50)


def test_spread_gives_median_and_range() -> None:
    assert spread([3.0, 1.0, 10.0, 2.0]) == {"median": 2.5, "min": 1.0, "max": 10.0, "n": 4}


def _sent(senders: int, per_sender: int) -> list[str]:
    return [event_text(f"s{s}", i) for s in range(senders) for i in range(per_sender)]


def test_everything_once_in_order_per_sender_is_intact() -> None:
    sent = _sent(2, 3)
    # Senders interleave freely; each sender's own order is kept.
    arrived = [("s1", "s1/0"), ("s0", "s0/0"), ("s0", "s0/1"), ("s1", "s1/1"),
               ("s1", "s1/2"), ("s0", "s0/2")]  # fmt: skip
    result = check_integrity(sent, arrived)
    assert result.ok
    assert result.as_dict() == {"lost": 0, "duplicated": 0, "reordered": 0, "unexpected": 0}


def test_lost_duplicated_reordered_and_unexpected_are_each_counted() -> None:
    sent = _sent(1, 4)
    arrived = [("s0", "s0/0"), ("s0", "s0/2"), ("s0", "s0/1"), ("s0", "s0/2"), ("s0", "nope")]
    result = check_integrity(sent, arrived)
    assert not result.ok
    assert (result.lost, result.duplicated, result.reordered, result.unexpected) == (1, 1, 1, 1)


def test_a_text_delivered_to_the_wrong_sender_is_unexpected() -> None:
    result = check_integrity(["s0/0"], [("s1", "s0/0")])
    assert result.unexpected == 1


def test_key_kind_hides_ids_but_keeps_the_shape() -> None:
    assert key_kind("hb:v1:{p:3}:enq:g4nqGuj8TpCa6tiZ3DeeNw") == "hb:v1:{p:*}:enq:<id>"
    assert key_kind("hb:v1:{e:g4nqGuj8TpCa6tiZ3DeeNw}:claim") == "hb:v1:{e:*}:claim"
    # the claim hashes: one row whatever the shard and time bucket
    assert key_kind("hb:v1:{e:17}:claims:1995484") == "hb:v1:{e:*}:claims:<bucket>"
    # one record per conversation: grouped, not a row each
    assert key_kind("hb:v1:{p:3}:msgs:mem-c-gateway-7") == "hb:v1:{p:*}:msgs:<conversation>"
    assert key_kind("hb:v1:{s:mem-s-gateway-17}:rec") == "hb:v1:{s:*}:rec"
    assert key_kind("hb:v1:{relays}:live") == "hb:v1:{relays}:live"
    assert key_kind("hb:v1:{handoffs}:live:17") == "hb:v1:{handoffs}:live:<n>"
    assert key_kind("hb:v1:{handoffs}:live") == "hb:v1:{handoffs}:live"
    assert key_kind("hb:v1:{p:3}:timers:15") == "hb:v1:{p:*}:timers:<n>"
    assert key_kind("hb:v1:{p:3}:timers") == "hb:v1:{p:*}:timers"


def test_ratios_pair_the_two_sides_of_each_round() -> None:
    def run(side: str, rnd: int, rate: float) -> dict[str, Any]:
        return {"api": "gateway", "side": side, "round": rnd, "saturated": {"rate": rate}}

    runs = [run("bridge", 0, 100.0), run("ceiling", 0, 200.0),
            run("ceiling", 1, 400.0), run("bridge", 1, 300.0)]  # fmt: skip
    # Within a round, not median over median (which would be 200 / 300).
    assert sorted(_paired_ratios(runs, "gateway", "saturated", "rate")) == [0.5, 0.75]


def _run(side: str, rnd: int, redis_ms: float | None) -> dict[str, Any]:
    phase: dict[str, Any] = {
        "delivered_per_s": 100.0, "p99_ms": 2.0, "p50_ms": 1.0, "cpu_ms_per_event": 1.0,
        "events": 10, **dict.fromkeys(("lost", "duplicated", "reordered", "unexpected", "non_2xx"), 0),
        "rate": 50.0,
    }  # fmt: skip
    if redis_ms is not None:
        phase["redis_cpu_ms_per_event"] = redis_ms
    return {"api": "gateway", "side": side, "round": rnd, "saturated": phase, "paced": phase,
            "loadavg_1m": [1.0, 1.0]}  # fmt: skip


def test_a_figure_older_runs_did_not_measure_is_left_out_not_a_crash() -> None:
    old = summarize([_run("bridge", 0, None), _run("ceiling", 0, None)], {})
    assert "redis_cpu" not in old["gateway"]["figures"] and "cpu" in old["gateway"]["figures"]
    assert "Redis's CPU" not in api_table("gateway", old["gateway"])
    new = summarize([_run("bridge", 0, 0.3), _run("ceiling", 0, 0.1)], {})
    assert new["gateway"]["figures"]["redis_cpu"]["ratio"]["median"] == pytest.approx(3.0)
    assert "Redis's CPU per event, saturated" in api_table("gateway", new["gateway"])


def test_the_report_names_the_calibrations_that_fixed_the_paced_rate() -> None:
    assert _calibration({"calibration": {"gateway": [880.4, 1309.0, 897.0]}}) == (
        " The paced rate is half the median of the bridge's calibration phases: "
        "gateway 880, 1,309, 897 ev/s."
    )
    assert _calibration({}) == ""  # results from before the runner calibrated three times
