"""The store's hot path to one Redis (bridge/store/line.py), against the real Redis and the
embedded one: replies in order, errors in place, connections dropped unless clean, bounded."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import redis.exceptions as rexc

from bridge.store.embedded import embedded_client, redis_client
from bridge.store.line import Line

EMBEDDED = "embedded"


@pytest.fixture(params=["redis", EMBEDDED])
def url(request: pytest.FixtureRequest) -> str:
    """The real Redis's URL, or EMBEDDED."""
    if request.param == EMBEDDED:
        return EMBEDDED
    return str(request.getfixturevalue("real_redis_url"))


@pytest.fixture
async def client(url: str) -> AsyncIterator[aioredis.Redis]:
    made = embedded_client() if url == EMBEDDED else redis_client(url)
    assert isinstance(made, aioredis.Redis)
    made.backend = url  # type: ignore[attr-defined]
    yield made
    await made.aclose()


@pytest.fixture
def key(key_prefix: str) -> str:
    return f"{key_prefix}line:{secrets.token_hex(4)}"


def real_only(client: aioredis.Redis, why: str) -> None:
    if client.backend == EMBEDDED:  # type: ignore[attr-defined]
        pytest.skip(why)


async def test_batch_runs_in_order_and_keeps_reply_errors_in_place(
    client: aioredis.Redis, key: str
) -> None:
    line = Line.of(client)
    replies = await line.batch([["SET", key, "1"], ["HGET", key, "f"], ["INCR", key]])
    assert replies[0] is True or replies[0] == "OK"
    assert isinstance(replies[1], rexc.ResponseError)  # WRONGTYPE
    assert replies[2] == 2
    assert await line.execute("GET", key) == "2"
    with pytest.raises(rexc.ResponseError):
        await line.execute("HGET", key, "f")
    await line.execute("DEL", key)
    await line.close()


async def test_the_connection_is_reused_when_clean(client: aioredis.Redis) -> None:
    line = Line.of(client)
    first = await line.execute("CLIENT", "ID")
    assert await line.execute("CLIENT", "ID") == first
    await line.close()


async def test_a_read_cancelled_midway_drops_its_connection(
    client: aioredis.Redis, key: str
) -> None:
    """Otherwise the next caller would read the cancelled command's reply as its own."""
    real_only(client, "fakeredis answers BLPOP at once: nothing to cancel midway")
    line = Line.of(client, limit=1)
    blocked = asyncio.create_task(line.execute("BLPOP", key, 5))
    await _blocked_on(client)  # a signal: Redis says the BLPOP is waiting
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert line.connections == 0  # dropped, not put back
    await client.rpush(key, "late")  # would be the reply a reused connection hands over
    assert await line.execute("ECHO", "mine") == "mine"
    await client.delete(key)
    await line.close()


async def test_callers_past_the_limit_wait_then_fail_like_a_full_pool(
    client: aioredis.Redis, key: str
) -> None:
    real_only(client, "fakeredis answers BLPOP at once: nothing holds the connection")
    line = Line.of(client, limit=1, wait_s=0.2)
    holder = asyncio.create_task(line.execute("BLPOP", key, 5))
    await _blocked_on(client)
    with pytest.raises(rexc.ConnectionError, match="no connection"):
        await line.execute("ECHO", "x")
    await client.rpush(key, "v")
    assert await holder == [key, "v"]
    assert await line.execute("ECHO", "y") == "y"  # the slot came back
    await line.close()


async def test_a_connection_killed_between_uses_is_replaced(client: aioredis.Redis) -> None:
    real_only(client, "fakeredis has no CLIENT KILL")
    line = Line.of(client)
    first = await line.execute("CLIENT", "ID")
    await client.execute_command("CLIENT", "KILL", "ID", first)
    second = await line.execute("CLIENT", "ID")  # one retry, on a fresh connection
    assert second != first
    await line.close()


async def test_no_server_is_a_connection_error() -> None:
    client = redis_client("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert isinstance(client, aioredis.Redis)
    with pytest.raises(rexc.ConnectionError):
        await Line.of(client).execute("PING")
    await client.aclose()


async def _blocked_on(client: aioredis.Redis) -> None:
    """Until Redis lists a client blocked in BLPOP (this test's: keys are the test's own)."""
    async with asyncio.timeout(10):
        # Polled: Redis has no event for it.
        while "cmd=blpop" not in str(await client.execute_command("CLIENT", "LIST")):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
