"""`serve` takes its startup heap out of the garbage collector's walks (bridge/web/server.py):
a full collection over the imported libraries paused the event loop for tens of ms."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from bridge.web.server import settle_heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's own heap stays as it was


def test_the_startup_heap_is_frozen_and_later_garbage_still_collected(unfrozen: None) -> None:
    tracked = len(gc.get_objects())
    settle_heap()
    assert gc.get_freeze_count() >= tracked // 2  # what was alive is out of the walks
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # made after the freeze: collected as before
