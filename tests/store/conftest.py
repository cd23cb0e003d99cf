"""The store contract suite runs every test against a real Redis and the embedded store."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bridge.store import RedisStore, open_store

PARTITIONS = 4  # small, so tests can cover every partition cheaply
OWNER = "worker-a"
OTHER = "worker-b"
LEASE_MS = 10_000


@pytest.fixture(params=["redis", "embedded"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """The URL `open_store` gets: the real Redis (its fixture fails under CI=true when Redis is
    down, and deletes this test's keys afterwards), or None for the embedded store."""
    if request.param == "redis":
        return str(request.getfixturevalue("real_redis_url"))
    return None


@pytest.fixture
async def store(backend_url: str | None, key_prefix: str) -> AsyncIterator[RedisStore]:
    opened = await open_store(backend_url, prefix=key_prefix, partitions=PARTITIONS)
    yield opened
    await opened.close()


@pytest.fixture
async def leased(store: RedisStore) -> RedisStore:
    """A store whose every partition is leased to OWNER."""
    for p in range(store.partitions):
        assert await store.acquire_partition(p, OWNER, LEASE_MS)
    return store


def now_ms() -> int:
    return int(time.time() * 1000)
