"""Opening the store: a real Redis (or Redis Cluster) when a URL is given, else an embedded
fakeredis.

`redis://` and `rediss://` name one Redis server; `redis+cluster://` and `rediss+cluster://`
name any one node of a Redis Cluster (the client discovers the others and follows the slots as
they move). Every atomic step of the store stays inside one hash slot (see `keys.py`), so the
same store runs unchanged on either.

All run the very same `RedisStore` (Lua included: fakeredis runs the scripts with lupa), so
the embedded store is not a second implementation and passes the same contract suite. It lives
in this process only: two processes must never each hold one (`serve` warns, the actions
refuse to load without `REDIS_URL`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import fakeredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from bridge.store.redis_store import Client, RedisStore

# A dead Redis must fail fast (the webhook answers 503 and 8x8 retries; /ready reports it)
# rather than hold a request: redis-py's default is to wait forever.
CONNECT_TIMEOUT_S = 2.0
# Every command and script is short; a reply slower than this means Redis is in trouble.
SOCKET_TIMEOUT_S = 5.0
# A connection idle this long is PINGed before use, so one dropped by a restart or a proxy is
# replaced instead of failing the first request after it.
HEALTH_CHECK_INTERVAL_S = 30
# One quick retry after a connection error: enough to ride over a reconnect, too little to
# keep a request waiting on a dead server. A retried write whose first try did land is
# harmless (scripts are idempotent or fenced) except `note_attempt`, which then counts one
# attempt twice, and `outbox_push`, which then holds one item twice.
RETRIES = 1
# Connections to one Redis server at most; a command finding them all busy waits for one (up to
# SOCKET_TIMEOUT_S, then the store is unavailable) instead of failing at once, as redis-py's own
# pool does past its default of 100: a burst of webhook requests then queued for a moment
# instead of answering 503. Bounded, so the process's file descriptors stay for its clients
# (bridge/web/connections.py reserves some for the Redis pool).
MAX_CONNECTIONS = 64
# Of which the store's hot path (`line.Line`) takes one; the client's pool has the rest.
_POOL_CONNECTIONS = MAX_CONNECTIONS - 1


class _Cluster(RedisCluster):
    """redis-py's async cluster client, initialized before each command's routing: its own
    `execute_command` works out a command's slot (with the uninitialized client's startup node)
    before it initializes, which fails when a first burst of commands runs concurrently (seen
    with redis-py 8.1). `initialize` takes a lock and returns at once when already done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The cluster client has no waiting pool: a command past a node's `max_connections`
        # fails. Commands wait their turn here instead, MAX_CONNECTIONS in flight at most.
        self._turns = asyncio.Semaphore(MAX_CONNECTIONS)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        await self.initialize()
        async with self._turns:
            return await super().execute_command(*args, **kwargs)


# The URL schemes that name a Redis Cluster, and the plain scheme each stands for.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_node_url(redis_url: str) -> str | None:
    """For a cluster URL, the plain URL of its seed node; None for a single-server URL."""
    scheme, sep, rest = redis_url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    return f"{plain}://{rest}" if plain else None


def redis_client(redis_url: str) -> Client:
    """A client for a real Redis or Redis Cluster, with the bridge's timeouts."""
    options = {
        "decode_responses": True,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=RETRIES),
    }
    seed = cluster_node_url(redis_url)
    if seed is not None:
        # Room above the commands' bound for what holds a connection of its own (pub/sub).
        return _Cluster.from_url(seed, max_connections=MAX_CONNECTIONS + 8, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url, max_connections=_POOL_CONNECTIONS, timeout=SOCKET_TIMEOUT_S, **options
    )
    return aioredis.Redis.from_pool(pool)


def embedded_client() -> aioredis.Redis:
    """A fresh in-process Redis (its own server: nothing shared with other stores)."""
    fake = fakeredis.FakeAsyncRedis(
        server=fakeredis.FakeServer(version=(7,)), decode_responses=True
    )
    # Its connections, in a pool that waits as a real Redis's does (MAX_CONNECTIONS).
    pool = aioredis.BlockingConnectionPool(
        connection_class=fake.connection_pool.connection_class,
        max_connections=_POOL_CONNECTIONS,
        timeout=SOCKET_TIMEOUT_S,
        **fake.connection_pool.connection_kwargs,
    )
    return aioredis.Redis.from_pool(pool)


async def open_store(
    redis_url: str | None, *, prefix: str = "", partitions: int = 16
) -> RedisStore:
    """The store for `REDIS_URL` (None or empty: the embedded one). Does not connect yet: a
    Redis that is down shows as `StoreUnavailable` on first use (and on /ready)."""
    client = redis_client(redis_url) if redis_url else embedded_client()
    return RedisStore(client, prefix=prefix, partitions=partitions)
