"""The store contract suite runs every test against a real Redis, a Redis Cluster and the
embedded store, and checks the key rule of `keys.py` after each test (tests/support/store_rules)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bridge.store import RedisStore, open_store
from tests.support.store_rules import Recorder, violations

PARTITIONS = 4  # small, so tests can cover every partition cheaply
OWNER = "worker-a"
OTHER = "worker-b"
LEASE_MS = 10_000


@pytest.fixture(params=["redis", "cluster", "embedded"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    """The URL `open_store` gets: the real Redis (its fixture fails under CI=true when Redis is
    down, and deletes this test's keys afterwards), the session's Redis Cluster, or None for the
    embedded store."""
    if request.param == "redis":
        return str(request.getfixturevalue("real_redis_url"))
    if request.param == "cluster":
        return str(request.getfixturevalue("redis_cluster_url"))
    return None


@pytest.fixture
async def store(backend_url: str | None, key_prefix: str) -> AsyncIterator[RedisStore]:
    """The store under test. Afterwards, whatever the test made the store do must have kept the
    key rule: every script and transaction in one slot, every key left with a TTL or an owner."""
    opened = await open_store(backend_url, prefix=key_prefix, partitions=PARTITIONS)
    recorder = Recorder(opened)
    yield opened
    broken = await violations(opened, recorder)
    await opened.close()
    assert broken == [], "the key rule of bridge/store/keys.py is broken:\n" + "\n".join(broken)


@pytest.fixture
async def leased(store: RedisStore) -> RedisStore:
    """A store whose every partition is leased to OWNER."""
    for p in range(store.partitions):
        assert await store.acquire_partition(p, OWNER, LEASE_MS)
    return store


def now_ms() -> int:
    return int(time.time() * 1000)
