"""Drains the outbox: user messages (and leaves) that waited while 8x8 was unreachable.

Runs in every `serve` process; the per-sender lease makes one of them do a given sender at a
time, in order. While 8x8 stays down it backs off, up to `max_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bridge.errors import StoreUnavailable
from bridge.service import HandoffService

log = logging.getLogger(__name__)


class OutboxDrainer:
    def __init__(
        self, service: HandoffService, interval_s: float = 1.0, max_interval_s: float = 30.0
    ) -> None:
        self._service = service
        self._interval_s = interval_s
        self._max_interval_s = max_interval_s
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-drainer")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)

    async def drain_once(self) -> bool:
        """One pass over every sender with a waiting outbox. True when all are empty."""
        all_empty = True
        for sender in await self._service.store.outbox_senders():
            if self._stopping.is_set():
                return False
            try:
                drained = await self._service.drain_outbox(sender)
            except StoreUnavailable:
                return False
            except Exception:  # one bad item must not stop the others
                log.exception("outbox_drain_error", extra={"sender": sender})
                drained = False
            all_empty = all_empty and drained
        return all_empty

    async def _run(self) -> None:
        delay = self._interval_s
        while not self._stopping.is_set():
            try:
                ok = await self.drain_once()
            except StoreUnavailable:
                ok = False
            delay = self._interval_s if ok else min(self._max_interval_s, delay * 2)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._wake.clear()
