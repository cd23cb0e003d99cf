"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test run uses: tests never FLUSHALL a shared Redis."""
    return f"hbtest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def real_redis_url(key_prefix: str) -> AsyncIterator[str]:
    """The URL of the machine's real Redis. Fails (never skips) under CI=true when it is down;
    afterwards deletes the keys of this test's prefix."""
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"Redis is required under CI=true and is not reachable at {REDIS_URL}: {exc}"
            )
        pytest.skip(f"no Redis at {REDIS_URL}")
    yield REDIS_URL
    async for key in client.scan_iter(match=f"{key_prefix}*", count=500):
        await client.delete(key)
    await client.aclose()
