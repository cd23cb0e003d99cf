"""Waiting for asynchronous outcomes in tests, with a deadline (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from bridge.relay.idle import work_left
from bridge.store.base import Store


async def eventually(
    condition: Callable[[], bool], within: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


async def relay_settled(store: Store, within: float = 30.0) -> None:
    """Until no relay on `store`, in any process, has work left: every stream empty and no held
    conversation able to move (bridge/relay/idle.py). Entries leave only after their last push,
    so this also means nothing is in flight."""
    deadline = time.monotonic() + within
    while await work_left(store, int(time.time() * 1000)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for the relay to settle")
        await asyncio.sleep(0.02)
