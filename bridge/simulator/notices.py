"""Change notices for watchers (the sandbox page streams them to a browser).

Publishing never waits: a watcher that falls more than `limit` notices behind loses the
oldest ones (it can always re-read the state). Closing ends every subscription.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

Notice = dict[str, Any]


class Subscription(AsyncIterator[Notice]):
    """Registered when created, so nothing published after subscribe() is missed."""

    def __init__(self, hub: Notices, limit: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Notice | None] = asyncio.Queue(maxsize=limit)

    def put(self, notice: Notice | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()  # drop the oldest rather than block the simulator
        self._queue.put_nowait(notice)

    async def __anext__(self) -> Notice:
        notice = await self._queue.get()
        if notice is None:
            self._hub.unsubscribe(self)
            raise StopAsyncIteration
        return notice

    def close(self) -> None:
        self._hub.unsubscribe(self)


class Notices:
    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._subscribers: set[Subscription] = set()
        self._closed = False

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._limit)
        if self._closed:
            sub.put(None)
        else:
            self._subscribers.add(sub)
        return sub

    @property
    def watched(self) -> bool:
        """Whether anyone subscribes (publishers skip building notices otherwise)."""
        return bool(self._subscribers)

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    def publish(self, notice: Notice) -> None:
        for sub in list(self._subscribers):
            sub.put(notice)

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subscribers):
            sub.put(None)
        self._subscribers.clear()
