"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from tests.support.redis_cluster import LocalCluster, binaries_missing

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


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A Redis Cluster of three masters started for this test session from the machine's
    `redis-server` (the bridge's `redis+cluster://` URL). Fails (never skips) under CI=true when
    `redis-server` or `redis-cli` is missing."""
    missing = binaries_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"a Redis Cluster is required under CI=true; missing: {missing}")
        pytest.skip(f"no {missing} to start a Redis Cluster")
    cluster = LocalCluster()
    cluster.start()
    yield cluster.url
    cluster.stop()
