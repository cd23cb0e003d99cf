"""Fault injection: the next N calls of a route fail in a chosen way.

Faults queue up per route in the order they were asked for. `webhook_delivery` is the
simulator's own side: its next N delivery attempts (events and WEB_HOOK_VERIFY alike) count
as failed without anything being sent, so its retries can be exercised.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

ROUTES = frozenset(
    {
        "token",
        "create_conversation",
        "send_message",
        "leave",
        "get_conversation",
        "list_messages",
        "list_conversations",
        "interactions",
        "jwk",
        "webhooks",
        "channels",
        "participants",
        "typing",
        "realtime",
        "webhook_delivery",
    }
)


@dataclass(frozen=True, slots=True)
class Fault:
    status: int
    retry_after: float | None = None
    timeout: bool = False  # hang past the client's timeout instead of answering


class Faults:
    def __init__(self) -> None:
        self._queued: dict[str, deque[Fault]] = {}

    def fail_next(
        self,
        route: str,
        count: int = 1,
        status: int = 503,
        retry_after: float | None = None,
        timeout: bool = False,
    ) -> None:
        """Make the next `count` calls of `route` answer `status` (or hang, with timeout=True).

        Raises ValueError for an unknown route or an impossible value.
        """
        if route not in ROUTES:
            raise ValueError(f"unknown route {route!r}; known: {', '.join(sorted(ROUTES))}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if retry_after is not None and not (retry_after >= 0 and math.isfinite(retry_after)):
            raise ValueError("retry_after must be a non-negative number of seconds")
        fault = Fault(status, retry_after, timeout)
        self._queued.setdefault(route, deque()).extend([fault] * count)

    def take(self, route: str) -> Fault | None:
        """The fault for this call of `route`, if one is queued (and use it up)."""
        queued = self._queued.get(route)
        if not queued:
            return None
        fault = queued.popleft()
        if not queued:
            del self._queued[route]
        return fault

    def pending(self) -> dict[str, int]:
        return {route: len(q) for route, q in self._queued.items()}

    def clear(self) -> None:
        self._queued.clear()
