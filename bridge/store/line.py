"""The store's hot path to one Redis server: commands straight onto redis-py's connections.

Every event costs the door two commands and the relay a few more, and redis-py's client spends
about as much CPU around a command as on it: its pool's lock and bookkeeping, the retry
wrapper, a timer for the pool wait, observability hooks. Measured on this project's machines,
an EVALSHA costs ~54 µs of CPU through `Redis.execute_command` and ~28 µs through this module
(`python -m bench.commands`; bench/results/line-microbench.txt). The rest of the store (admin, outboxes,
timers' reads, pub/sub) keeps the full client: it is not per event.

What is kept of redis-py: its connections (protocol, hiredis parsing, the socket, connect and
read timeouts, TLS, AUTH) and its exceptions, so `_guarded` in `redis_store.py` turns trouble
into `StoreUnavailable` exactly as before. What this module does itself, and why it is safe:
- A connection is reused only after its replies were all read. Anything else (an error, a
  timeout, a cancellation mid-read) drops it: a half-read connection would hand the next caller
  another command's reply.
- At most `limit` connections; a caller finding them all busy waits up to `wait_s`, then gets
  the same `ConnectionError` redis-py's waiting pool raises.
- One retry, on a fresh connection, after a connection error or timeout (redis-py's `Retry`
  with `RETRIES = 1` did the same for these commands; they are idempotent or fenced).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.connection import AbstractConnection

Command = Sequence[Any]  # a command's name and its arguments

# Connections of the line at most (embedded.MAX_CONNECTIONS bounds the line and the client's
# pool together), and how long a command waits for one when all are busy.
CONNECTIONS = 48
WAIT_S = 5.0

# What a fresh connection may cure; anything else (a reply error) is the caller's.
_RETRIED = (rexc.ConnectionError, rexc.TimeoutError, ConnectionError, TimeoutError, OSError)
RETRY_PAUSE_S = 0.05


class Line:
    """Up to `limit` connections to one Redis server, made by `connect` (unconnected: each
    connects on first use), for single commands and in-order batches of commands."""

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        limit: int = CONNECTIONS,
        wait_s: float = WAIT_S,
    ) -> None:
        self._connect = connect
        self._idle: list[AbstractConnection] = []
        self._slots = asyncio.Semaphore(limit)
        self._wait_s = wait_s
        self._open: set[AbstractConnection] = set()

    @classmethod
    def of(cls, client: aioredis.Redis, limit: int = CONNECTIONS, wait_s: float = WAIT_S) -> Line:
        """A line with the connections `client`'s pool would make (same URL, timeouts, TLS,
        credentials, decoding)."""
        pool = client.connection_pool
        return cls(lambda: pool.connection_class(**pool.connection_kwargs), limit, wait_s)

    @property
    def connections(self) -> int:
        """Connections made and not dropped (idle or in use)."""
        return len(self._open)

    async def execute(self, *command: Any) -> Any:
        """One command's reply; a reply error is raised."""
        replies = await self.batch([command])
        if isinstance(replies[0], rexc.ResponseError):
            raise replies[0]
        return replies[0]

    async def batch(self, commands: Sequence[Command]) -> list[Any]:
        """The replies to `commands`, sent together and run in order on one connection (one
        round trip, not a transaction). A reply error takes its reply's place in the list."""
        try:
            return await self._on_a_connection(commands)
        except _RETRIED:
            await asyncio.sleep(RETRY_PAUSE_S)
            return await self._on_a_connection(commands)

    async def close(self) -> None:
        for conn in list(self._open):
            await conn.disconnect()
        self._open.clear()
        self._idle.clear()

    async def _on_a_connection(self, commands: Sequence[Command]) -> list[Any]:
        await self._take_slot()
        try:
            conn = self._idle.pop() if self._idle else self._new()
            try:
                replies = await _exchange(conn, commands)
            except BaseException:
                self._open.discard(conn)
                await conn.disconnect(nowait=True)
                raise
            self._idle.append(conn)
            return replies
        finally:
            self._slots.release()

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # returns at once: no timer on the common path
            return
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise rexc.ConnectionError("no connection to redis free in time") from None

    def _new(self) -> AbstractConnection:
        conn = self._connect()
        self._open.add(conn)
        return conn


async def _exchange(conn: AbstractConnection, commands: Sequence[Command]) -> list[Any]:
    await conn.send_packed_command(conn.pack_commands(commands))
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await conn.read_response())
        except rexc.ResponseError as exc:
            replies.append(exc)
    return replies
