"""Bounded retries: a cap on attempts AND on total time, exponential backoff with full jitter.

Both bounds matter. The handoff actions run while Rasa waits for them, so a call that could
retry for minutes would stall the user's conversation; the attempt cap alone cannot promise
that, because each attempt may itself take seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try. `total_budget_s` covers attempts and the waits between them."""

    max_attempts: int = 4
    total_budget_s: float = 10.0
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0

    def backoff_cap(self, failures: int) -> float:
        """The upper bound of the jittered wait after `failures` failed attempts (1-based)."""
        return float(min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1)))


async def retry(
    operation: Callable[[float], Awaitable[T]],
    *,
    policy: RetryPolicy,
    is_retryable: Callable[[Exception], bool],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run `operation` until it succeeds, fails for good, or the policy is spent.

    Args:
        operation: One attempt. It is called with the seconds left in the budget, so it can
            bound its own timeout and the whole call stays within `policy.total_budget_s`.
        policy: The attempt cap, time budget and backoff.
        is_retryable: True for an exception worth another attempt; any other is raised at once.
        sleep: Awaitable sleep (injectable for tests).
        clock: Monotonic clock in seconds (injectable for tests).
        jitter: Uniform random number in [0, 1) (injectable for tests).

    Returns:
        What the first successful attempt returned.

    Raises:
        Exception: The last attempt's exception, when it is not retryable or nothing is left.
            A `retry_after_s` attribute on it (e.g. from a 429) sets the wait instead of the
            backoff; when that wait would overrun the budget we give up at once rather than
            sleep and try early, which would only earn another 429.
    """
    deadline = clock() + policy.total_budget_s
    attempt = 0
    while True:
        attempt += 1
        try:
            return await operation(max(0.0, deadline - clock()))
        except Exception as exc:
            delay = _next_delay(exc, attempt, policy, is_retryable, jitter)
            if delay is None or clock() + delay >= deadline:
                raise
            log.debug(
                "attempt %d failed (%s); retrying in %.2fs", attempt, type(exc).__name__, delay
            )
        await sleep(delay)


def _next_delay(
    exc: Exception,
    attempt: int,
    policy: RetryPolicy,
    is_retryable: Callable[[Exception], bool],
    jitter: Callable[[], float],
) -> float | None:
    """The wait before the next attempt, or None when there must be no next attempt."""
    if attempt >= policy.max_attempts or not is_retryable(exc):
        return None
    hint = getattr(exc, "retry_after_s", None)
    if isinstance(hint, int | float) and hint >= 0:
        return float(hint)
    # Full jitter (uniform in [0, cap]) spreads the retries of many callers that failed
    # together, e.g. every action when 8x8 blipped.
    return jitter() * policy.backoff_cap(attempt)
