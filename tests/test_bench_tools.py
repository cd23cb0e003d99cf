"""The benchmark tools still run against the code they measure: each `bench` module imports,
and the relay-step loop works an event (a renamed function broke `bench.steps` unseen)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench
from bench import steps


@pytest.mark.parametrize("name", sorted(m.name for m in pkgutil.iter_modules(bench.__path__)))
def test_each_bench_module_imports(name: str) -> None:
    importlib.import_module(f"bench.{name}")


def test_the_relay_step_loop_works_events() -> None:
    assert steps.one_round(5) >= 0.0
