"""`serve` takes its startup heap out of the garbage collector's walks (bridge/web/server.py):
a full collection over the imported libraries paused the event loop for tens of ms."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.web.server import YOUNG_COLLECTION_THRESHOLD, settle_heap
from tests.support.serve_proc import ServeProc, base_env


@pytest.fixture
def unfrozen() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's own heap stays as it was
    gc.set_threshold(*threshold)


def test_the_startup_heap_is_frozen_and_later_garbage_still_collected(unfrozen: None) -> None:
    tracked = len(gc.get_objects())
    assert settle_heap() == gc.get_freeze_count() >= tracked // 2  # out of the walks
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # made after the freeze: collected as before


def test_young_objects_are_collected_less_often_but_still_automatically(unfrozen: None) -> None:
    settle_heap()
    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    collected: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 0:
            collected.append(info["collected"])

    gc.callbacks.append(count)
    try:
        kept = [[] for _ in range(YOUNG_COLLECTION_THRESHOLD // 2)]  # tracked, alive
        assert not collected  # fewer than the threshold: no collection yet
        for _ in range(3 * YOUNG_COLLECTION_THRESHOLD):
            cycle: list[object] = []
            cycle.append(cycle)  # garbage only a collection frees
        del cycle, kept
    finally:
        gc.callbacks.remove(count)
    assert collected and sum(collected) >= YOUNG_COLLECTION_THRESHOLD  # no explicit collect


def test_serve_freezes_its_heap_once_serving(tmp_path: Path) -> None:
    serve = ServeProc(base_env(), tmp_path / "serve.log")
    asyncio.run(serve.start())  # ready: the "serving" line was written before any request
    try:
        lines = [json.loads(line) for line in serve.log_lines() if line.startswith("{")]
    finally:
        serve.stop()
    serving = [line for line in lines if line.get("event") == "serving"]
    assert serving and serving[0]["frozen_objects"] > 10_000  # the libraries' objects


def test_the_benchmarks_ceiling_collects_as_seldom_as_serve() -> None:
    """bench/ceiling.py loads none of the bridge, so it repeats the threshold: kept equal."""
    ceiling = (Path(__file__).parents[2] / "bench" / "ceiling.py").read_text()
    assert f"gc.set_threshold({YOUNG_COLLECTION_THRESHOLD:_}," in ceiling
