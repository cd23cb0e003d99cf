"""The retry helper, on a fake clock: attempt cap, time budget, backoff, Retry-After."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bridge.errors import PermanentUpstreamError, RetryableUpstreamError
from bridge.retry import RetryPolicy, retry


class FakeTime:
    """A clock that moves only when something sleeps or an attempt 'takes' time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """Fails with the given exceptions in turn, then returns "ok"."""

    def __init__(self, time: FakeTime, failures: Sequence[Exception], took_s: float = 0.0) -> None:
        self.time = time
        self.failures = list(failures)
        self.took_s = took_s
        self.remaining_seen: list[float] = []

    @property
    def attempts(self) -> int:
        return len(self.remaining_seen)

    async def __call__(self, remaining_s: float) -> str:
        self.remaining_seen.append(remaining_s)
        # Like the real clients, an attempt bounds its own timeout by the remaining budget.
        self.time.now += min(self.took_s, remaining_s)
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def retryable(exc: Exception) -> bool:
    return isinstance(exc, RetryableUpstreamError)


async def run(op: Flaky, time: FakeTime, policy: RetryPolicy, jitter: float = 0.5) -> str:
    return await retry(
        op,
        policy=policy,
        is_retryable=retryable,
        sleep=time.sleep,
        clock=time.clock,
        jitter=lambda: jitter,
    )


def boom(retry_after: float | None = None) -> RetryableUpstreamError:
    return RetryableUpstreamError("boom", status=503, retry_after_s=retry_after)


async def test_succeeds_after_retryable_failures() -> None:
    time = FakeTime()
    op = Flaky(time, [boom(), boom()])
    assert await run(op, time, RetryPolicy(max_attempts=4)) == "ok"
    assert op.attempts == 3


async def test_non_retryable_error_is_raised_at_once() -> None:
    time = FakeTime()
    op = Flaky(time, [PermanentUpstreamError("no", status=400)])
    with pytest.raises(PermanentUpstreamError):
        await run(op, time, RetryPolicy(max_attempts=4))
    assert op.attempts == 1
    assert time.sleeps == []


async def test_attempt_cap_raises_the_last_error() -> None:
    time = FakeTime()
    errors = [RetryableUpstreamError(f"e{i}") for i in range(10)]
    op = Flaky(time, errors)
    with pytest.raises(RetryableUpstreamError, match="e2"):
        await run(op, time, RetryPolicy(max_attempts=3))
    assert op.attempts == 3
    assert len(time.sleeps) == 2


async def test_time_budget_stops_retrying_before_the_attempt_cap() -> None:
    time = FakeTime()
    start = time.now
    op = Flaky(time, [boom() for _ in range(10)], took_s=3.0)
    with pytest.raises(RetryableUpstreamError):
        await run(op, time, RetryPolicy(max_attempts=10, total_budget_s=10.0))
    # 3 s attempts and short waits: the fourth attempt gets the last 0.3 s, then no wait fits.
    assert op.attempts == 4
    assert time.now - start == pytest.approx(10.0)
    assert all(0 < r <= 10.0 for r in op.remaining_seen)


async def test_operation_is_told_the_remaining_budget() -> None:
    time = FakeTime()
    op = Flaky(time, [boom(), boom()], took_s=2.0)
    await run(op, time, RetryPolicy(max_attempts=4, total_budget_s=10.0), jitter=0.0)
    assert op.remaining_seen == [10.0, 8.0, 6.0]


async def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    time = FakeTime()
    op = Flaky(time, [boom() for _ in range(5)])
    policy = RetryPolicy(max_attempts=6, total_budget_s=100.0, base_delay_s=0.2, max_delay_s=1.0)
    await run(op, time, policy, jitter=0.5)
    # cap = min(1.0, 0.2 * 2**(n-1)) -> 0.2, 0.4, 0.8, 1.0, 1.0; half of each (jitter 0.5)
    assert time.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


async def test_zero_jitter_retries_immediately() -> None:
    time = FakeTime()
    op = Flaky(time, [boom()])
    await run(op, time, RetryPolicy(), jitter=0.0)
    assert time.sleeps == [0.0]


async def test_retry_after_hint_replaces_the_backoff() -> None:
    time = FakeTime()
    op = Flaky(time, [boom(retry_after=1.5)])
    await run(op, time, RetryPolicy(total_budget_s=10.0), jitter=0.0)
    assert time.sleeps == [1.5]
    assert op.attempts == 2


async def test_retry_after_beyond_the_budget_gives_up_without_waiting() -> None:
    time = FakeTime()
    op = Flaky(time, [boom(retry_after=30.0)])
    with pytest.raises(RetryableUpstreamError):
        await run(op, time, RetryPolicy(total_budget_s=10.0))
    assert time.sleeps == []
    assert op.attempts == 1


async def test_single_attempt_policy_never_retries() -> None:
    time = FakeTime()
    op = Flaky(time, [boom()])
    with pytest.raises(RetryableUpstreamError):
        await run(op, time, RetryPolicy(max_attempts=1))
    assert op.attempts == 1
