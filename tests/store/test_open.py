"""Which client a `REDIS_URL` opens: one Redis, or a Redis Cluster by its scheme."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bridge.store import open_store
from bridge.store.embedded import cluster_node_url


@pytest.mark.parametrize(
    ("url", "node"),
    [
        ("redis+cluster://10.0.0.5:6379", "redis://10.0.0.5:6379"),
        ("rediss+cluster://u:p%40ss@h:7000", "rediss://u:p%40ss@h:7000"),
        ("REDIS+CLUSTER://h:1", "redis://h:1"),
        ("redis://h:6379/0", None),
        ("rediss://h:6379", None),
        ("unix:///tmp/redis.sock", None),
        ("h:6379", None),
    ],
)
def test_the_cluster_scheme_names_a_seed_node(url: str, node: str | None) -> None:
    assert cluster_node_url(url) == node


async def test_a_cluster_url_opens_a_cluster_client() -> None:
    cluster = await open_store("redis+cluster://127.0.0.1:1")  # not connected until used
    single = await open_store("redis://127.0.0.1:1")
    assert isinstance(cluster.redis, RedisCluster)
    assert isinstance(single.redis, Redis) and not isinstance(single.redis, RedisCluster)
    await cluster.close()
    await single.close()
