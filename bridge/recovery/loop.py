"""When `serve` sweeps: at start-up, soon after the webhook or the store was unavailable,
when an item found missing leaves the horizon, and every `interval_s` otherwise.

Every `serve` process runs one; the sweep's Redis lease makes one sweep at a time across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bridge.errors import StoreUnavailable
from bridge.recovery.sweep import Sweeper, SweepResult

log = logging.getLogger(__name__)

# After a failed sweep (the store down), try again this soon, doubling up to the interval:
# the sweep that follows the store's return is the one that finds what was missed meanwhile.
_RETRY_S = 1.0


class RecoveryLoop:
    def __init__(
        self, sweeper: Sweeper, clock: Callable[[], float] = time.time, retry_s: float = _RETRY_S
    ) -> None:
        self.sweeper = sweeper
        self._clock = clock
        self._retry_s = retry_s
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sweeps = 0  # sweeps done by this process (tests wait on it)
        self.failures = 0  # sweeps that found the store unavailable
        self.last: SweepResult | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="recovery")

    def request(self) -> None:
        """Sweep soon: something may have been missed (the webhook answered 503)."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()  # a sweep holds nothing that must finish: its lease lapses
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        retry = self._retry_s
        while not self._stopping.is_set():
            self._wake.clear()
            delay = self.sweeper.config.interval_s
            # While the store is down every webhook call answers 503 and asks for a sweep:
            # the backoff, not their rate, paces the attempts.
            waken = self._wake
            try:
                result = await self.sweeper.sweep()
            except StoreUnavailable:
                self.failures += 1
                delay, retry = retry, min(retry * 2, delay)
                waken = self._stopping
            except Exception:  # a bug must not end recovery for good
                log.exception("recovery_sweep_failed")
            else:
                retry = self._retry_s
                self.sweeps += 1
                self.last = result
                delay = self._next_delay(result, delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await waken.wait()

    def _next_delay(self, result: SweepResult, delay: float) -> float:
        if not result.swept:  # another process sweeps: look again later, in case it dies
            return delay
        if result.failed:  # 8x8 did not answer for some: soon, but not at once
            delay = min(delay, max(self._retry_s, delay / 4))
        if result.due_s is not None:
            delay = min(delay, max(0.0, result.due_s - self._clock()) + 0.05)
        return delay
