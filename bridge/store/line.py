"""The store's hot path to one Redis server: one connection, shared, and written once per turn
of the event loop.

Every event costs the door two commands and the relay a few more, and on a busy `serve` most
of them are issued by different requests in the same turn of the event loop. Sent as redis-py's
client sends them, each takes a connection from its pool and makes its own `send()` (on
loopback, the sender's system call also carries the receiver's side of TCP), with the pool's
lock and bookkeeping, a retry wrapper, a task and a timer for the write's timeout, another for
the read's. Here every command issued in one turn goes out in one write on one connection
(pipelining, as ioredis's auto-pipelining and StackExchange.Redis's multiplexer do), and one
reader task hands each reply to its caller: Redis answers a connection's commands in order.
A request made while nothing is in flight (a quiet moment, the usual one at a paced load) is
written at once instead, in its caller's turn, and the turn's later requests together behind
it. `python -m bench.commands` measures the CPU per command both ways.

What is kept of redis-py: the connection (handshake, AUTH, TLS, protocol, hiredis parsing) and
its exceptions, so `_guarded` in `redis_store.py` turns trouble into `StoreUnavailable` as for
the client. What this module owns, and why it is safe:
- Replies are matched to callers by order alone, so anything that could break the order (a
  lost connection, a reply error in the stream, a reply that does not come) fails every caller
  waiting on that connection with `ConnectionError` / `TimeoutError`, and the next command opens
  a new one. A reply error (`-ERR ...`) is a reply: it goes to its caller, in its place.
- A caller that gives up (cancelled) leaves its request in line: its replies are still read,
  then dropped, so the next caller still gets its own.
- No reply within `reply_timeout_s` of the oldest waiting request fails the connection (one
  timer a second, not one per command).
- At most `limit` requests in flight; past that a caller waits up to `wait_s`, then gets the
  `ConnectionError` a full pool gives (not retried).
- Callers waiting for a connection share one attempt to open it, and its failure.
- One retry, on a new connection, after a connection error or timeout, as the client's
  `Retry(retries=1)` did for these commands (they are idempotent or fenced).
- Commands that block the connection (BLPOP, XREAD BLOCK, SUBSCRIBE) never go through here: they
  would hold up every caller. The store uses the client for those.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis._parsers.hiredis import _AsyncHiredisParser
from redis.asyncio.connection import AbstractConnection

Command = Sequence[Any]  # a command's name and its arguments

# Requests in flight at most, and how long a caller waits for room past that.
LIMIT = 4096
WAIT_S = 5.0
# A reply slower than this means Redis is in trouble (embedded.SOCKET_TIMEOUT_S, for the client).
REPLY_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
WATCH_EVERY_S = 1.0

# What a new connection may cure; anything else (a reply error) is the caller's.
_RETRIED = (rexc.ConnectionError, rexc.TimeoutError, ConnectionError, TimeoutError, OSError)
RETRY_PAUSE_S = 0.05


class _NotRetried(rexc.ConnectionError):
    """A line full or closed: a new connection cures neither, and a full line's wait is the
    caller's bound, not to be waited twice."""


class _Request:
    __slots__ = ("packed", "count", "future", "since", "replies", "over", "on_over")

    def __init__(self, packed: bytes, count: int, future: asyncio.Future[list[Any]], since: float):
        self.packed = packed
        self.count = count  # commands, so replies, in `packed`
        self.future = future
        self.since = since
        self.replies: list[Any] = []
        self.over = False  # its replies read, or its link failed: no longer in flight
        self.on_over: Callable[[], None] | None = None  # its room, once its caller left

    def end(self) -> None:
        self.over = True
        if self.on_over is not None:
            self.on_over()


class Line:
    """Commands to one Redis server over one shared connection (made by `connect`, unconnected;
    opened on first use and after a failure)."""

    def __init__(
        self,
        connect: Callable[[], AbstractConnection],
        *,
        limit: int = LIMIT,
        wait_s: float = WAIT_S,
        reply_timeout_s: float = REPLY_TIMEOUT_S,
    ) -> None:
        self._connect = connect
        self._room = _Room(limit, wait_s)
        self._reply_timeout_s = reply_timeout_s
        self._link: _Link | None = None
        self._opening: asyncio.Task[_Link] | None = None
        self._closed = False

    @classmethod
    def of(cls, client: aioredis.Redis, **options: Any) -> Line:
        """A line with the connection `client`'s pool would make (same server, credentials, TLS,
        decoding), its reads left untimed: the line's own watch bounds them."""
        pool = client.connection_pool
        kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        return cls(lambda: pool.connection_class(**kwargs), **options)

    @property
    def connections(self) -> int:
        """1 while the connection is open, else 0."""
        return 1 if self._link is not None and not self._link.closed else 0

    async def execute(self, *command: Any) -> Any:
        """One command's reply; a reply error is raised."""
        replies = await self.batch([command])
        if isinstance(replies[0], rexc.ResponseError):
            raise replies[0]
        return replies[0]

    async def batch(self, commands: Sequence[Command], *, hold_s: float = 0.0) -> list[Any]:
        """The replies to `commands`, sent together and run in order (not a transaction: other
        callers' commands may run between them). A reply error takes its reply's place.
        `hold_s`: the commands may wait that long for others to share their write (`_Link`)."""
        if not commands:
            return []  # in line, it would take the next request's replies as its own
        try:
            return await self._send(commands, hold_s)
        except _NotRetried:
            raise
        except _RETRIED:
            await asyncio.sleep(RETRY_PAUSE_S)
            return await self._send(commands, hold_s)

    async def close(self) -> None:
        """Fails what is in flight; the line opens no connection again (a connection being
        opened is closed as soon as it is made)."""
        self._closed = True
        link, self._link = self._link, None
        if link is not None:
            await link.close(rexc.ConnectionError("the line was closed"))

    async def _send(self, commands: Sequence[Command], hold_s: float) -> list[Any]:
        room = self._room
        if not room.take():
            await room.wait()
        request: _Request | None = None
        try:
            link = self._link
            if link is None or link.closed:
                link = await self._open()
            request = link.submit(commands, hold_s)
            return await request.future
        finally:
            if request is not None and request.future.cancelled() and not request.over:
                request.on_over = room.give_back  # still in flight: its room with its reply
            else:
                room.give_back()

    async def _open(self) -> _Link:
        if self._closed:
            raise _NotRetried("the line was closed")
        if self._opening is None:
            self._opening = asyncio.get_running_loop().create_task(self._new_link())
            self._opening.add_done_callback(_retrieved)
        # One attempt for every caller waiting on it, and its failure for all: one attempt
        # each, one after another, would hold the k-th caller k connect timeouts when Redis
        # accepts but does not answer. Shielded: a caller that gives up leaves it to the rest.
        return await asyncio.shield(self._opening)

    async def _new_link(self) -> _Link:
        conn = self._connect()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S + self._reply_timeout_s):
                await conn.connect()  # type: ignore[no-untyped-call]
            if self._closed:
                raise _NotRetried("the line was closed")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise
        finally:
            self._opening = None
        self._link = _Link(conn, self._reply_timeout_s)
        return self._link


class _Room:
    """The in-flight bound: room for `limit` requests, and the callers waiting for room, first
    come first served. Not an asyncio.Semaphore: taking room when there is some is then one
    plain call (no coroutine, no scan of the waiters)."""

    def __init__(self, limit: int, wait_s: float) -> None:
        self.left = limit
        self._wait_s = wait_s
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take(self) -> bool:
        """Room taken at once, if there is some and nobody waits for it before the caller."""
        if self.left > 0 and not self._waiters:
            self.left -= 1
            return True
        return False

    async def wait(self) -> None:
        """Room, taken within `wait_s`, else `_NotRetried`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._wait_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed room as it gave up: the next waiter's
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise _NotRetried("no room on the line to redis in time") from None
            raise

    def give_back(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the room passes to it, not back to the counter
                return
        self.left += 1


class _Link:
    """One open connection: the requests written on it, in order, and what reads their
    replies. Once closed (any trouble), it fails what it holds and is never used again.

    The replies of a redis-py connection whose parser is hiredis's are read in the transport's
    own callback (`_Replies`): each reply resolves its caller's future as its bytes arrive.
    Read by a task through the connection's stream, a reply resumed its caller two turns of the
    event loop after it arrived (the reader task's, then the caller's), a task step and a turn
    per reply: at a paced load, several per event. Other connections (fakeredis's) are read by
    a task through their `read_response`.

    A request that nobody waits on at once (an ack: its lane's next entry of the same sender,
    if any, waits for it, nothing else) may be held back a moment (`hold_s`) for another
    request to share its write, and its reply the other's read: at a paced load a write and a
    read alone cost the loop a `send()`, a `recv()` and turns of the loop for each. The next
    request that is not held writes it with itself, at once if nothing is in flight."""

    def __init__(self, conn: AbstractConnection, reply_timeout_s: float) -> None:
        self._conn = conn
        self._reply_timeout_s = reply_timeout_s
        self._outgoing: list[_Request] = []
        self._waiting: collections.deque[_Request] = collections.deque()
        self._flush_soon: asyncio.Handle | None = None
        self._flush_later: asyncio.TimerHandle | None = None  # for held requests only
        self._held = 0  # of the requests in `_outgoing`, those held (`submit`)
        self.closed = False
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._have_waiting: asyncio.Event | None = None
        self._reader: asyncio.Task[None] | None = None
        if not _read_in_transport(conn, self):
            self._have_waiting = asyncio.Event()
            self._reader = loop.create_task(self._read())
        self._watch = loop.call_later(WATCH_EVERY_S, self._check)

    def submit(self, commands: Sequence[Command], hold_s: float = 0.0) -> _Request:
        """The future of `commands`' replies, the commands in line to be written (within
        `hold_s` when held)."""
        if self.closed:  # since its opening, for a caller that waited for it
            raise rexc.ConnectionError("the connection to redis was lost")
        # Packed here, not when written: arguments that cannot be sent fail their caller only,
        # not the connection and every request written with them.
        packed = _packed(commands)
        loop = self._loop
        request = _Request(packed, len(commands), loop.create_future(), loop.time())
        self._outgoing.append(request)
        if hold_s > 0:
            self._held += 1
            if self._flush_soon is None and self._flush_later is None:
                self._flush_later = loop.call_later(hold_s, self._flush)
        elif self._flush_soon is None:
            if self._waiting or len(self._outgoing) - self._held != 1:
                # Written after whatever else runs in this turn of the loop: one write for all.
                self._flush_soon = loop.call_soon(self._flush)
            else:
                # A lone request on an idle connection is written now, in its caller's turn,
                # with any held before it. Nothing is in flight, so this is a quiet moment: no
                # other request is likely to come this turn, and waiting for the turn's end
                # would cost a turn of the loop per round trip (at a paced load, several per
                # event).
                self._flush()
        return request

    def answer(self, reply: Any) -> None:
        """The next reply read: its request's (Redis answers a connection's commands in order)."""
        if not self._waiting:
            raise rexc.ConnectionError("redis sent a reply to no request")
        request = self._waiting[0]
        replies = request.replies
        replies.append(reply)
        if len(replies) == request.count:
            self._waiting.popleft()
            if not request.future.done():  # a cancelled caller's replies are dropped
                request.future.set_result(replies)
            request.end()

    def fail(self, error: BaseException) -> None:
        """Close at once: every request held fails with `error`; the connection is let go
        in the background (`close`)."""
        if not self.closed:
            self._loop.create_task(self.close(error))
            self._shut(error)

    async def close(self, error: BaseException) -> None:
        if not self.closed:
            self._shut(error)
        with contextlib.suppress(Exception):
            await self._conn.disconnect(nowait=True)

    def _shut(self, error: BaseException) -> None:
        self.closed = True
        self._watch.cancel()
        for handle in (self._flush_soon, self._flush_later):
            if handle is not None:
                handle.cancel()
        for request in [*self._waiting, *self._outgoing]:
            if not request.future.done():
                request.future.set_exception(error)
            request.end()
        self._waiting.clear()
        self._outgoing.clear()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    def _flush(self) -> None:
        """Write every request in line, in one write. Not waiting for the socket's buffer to
        drain is safe: the line's room bounds what is in it."""
        self._flush_soon = None
        if self._flush_later is not None:
            self._flush_later.cancel()
            self._flush_later = None
        self._held = 0
        if self.closed or not self._outgoing:
            return
        batch, self._outgoing = self._outgoing, []
        self._waiting.extend(batch)
        if self._have_waiting is not None:
            self._have_waiting.set()
        packed = batch[0].packed if len(batch) == 1 else b"".join([r.packed for r in batch])
        stream = self._conn._writer  # the connection's StreamWriter (or fakeredis's writer)
        try:
            if stream is None:
                raise rexc.ConnectionError("the connection to redis was closed")
            stream.writelines((packed,))  # fakeredis's writer has only this
        except Exception as exc:  # a transport closing: what it holds fails with it
            self.fail(_as_connection_error(exc))

    async def _read(self) -> None:
        waiting = self._waiting
        have_waiting = self._have_waiting
        assert have_waiting is not None
        try:
            read = _reader(self._conn)
            while True:
                while not waiting:
                    have_waiting.clear()
                    await have_waiting.wait()
                try:
                    reply = await read()
                except rexc.ResponseError as exc:
                    reply = exc
                self.answer(reply)
        except BaseException as exc:
            await self.close(_as_connection_error(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _check(self) -> None:
        if self.closed:
            return
        if self._waiting and self._loop.time() - self._waiting[0].since > self._reply_timeout_s:
            self.fail(rexc.TimeoutError("redis did not answer in time"))
            return
        self._watch = self._loop.call_later(WATCH_EVERY_S, self._check)


class _Replies(asyncio.Protocol):
    """The connection's transport's protocol once the line has it (`_read_in_transport`):
    every reply parsed as its bytes arrive, and handed to its request (`_Link.answer`)."""

    def __init__(self, link: _Link, reader: hiredis.Reader) -> None:
        self._link = link
        self._reader = reader

    def data_received(self, data: bytes) -> None:
        link = self._link
        if link.closed:
            return
        reader = self._reader
        try:
            reader.feed(data)
            reply = reader.gets()
            while reply is not _MORE:
                if not isinstance(reply, _PUSH):  # RESP3's out-of-band messages: no reply
                    _raise_connection_error(reply)
                    link.answer(reply)
                reply = reader.gets()
        except Exception as exc:  # a protocol error, or a reply that breaks the order
            link.fail(_as_connection_error(exc))

    def eof_received(self) -> None:
        self._link.fail(rexc.ConnectionError("redis closed the connection"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._link.fail(_as_connection_error(exc or OSError("the connection to redis was lost")))


_MORE = object()  # what the reader gives when a reply is not all in yet
# A RESP3 push (hiredis 3.2 and later); the line subscribes to nothing, so none is expected.
_PUSH: type = getattr(hiredis, "PushNotification", type("_NoPush", (), {}))


def _read_in_transport(conn: AbstractConnection, link: _Link) -> bool:
    """Read `conn`'s replies in its transport's callback (`_Replies`), parsed as its hiredis
    parser would (the same reply errors, decoding and protocol errors), if it is a redis-py
    connection reading through hiredis with nothing read ahead; else False."""
    parser = getattr(conn, "_parser", None)
    stream = getattr(conn, "_reader", None)
    writer = getattr(conn, "_writer", None)
    read_ahead = getattr(stream, "_buffer", None)  # bytes read ahead would be lost
    if (
        not isinstance(parser, _AsyncHiredisParser)
        or not isinstance(stream, asyncio.StreamReader)
        or writer is None
        or str(getattr(conn, "protocol", 2) or 2) not in ("2", "3")
        or read_ahead is None
        or read_ahead
        or (parser._reader is not None and parser._reader.has_data())
    ):
        return False
    options: dict[str, Any] = {
        "protocolError": rexc.InvalidResponse,
        "replyError": parser.parse_error,
        "notEnoughData": _MORE,
    }
    if conn.encoder.decode_responses:
        options["encoding"] = conn.encoder.encoding
        options["errors"] = conn.encoder.encoding_errors
    writer.transport.set_protocol(_Replies(link, hiredis.Reader(**options)))
    return True


def _raise_connection_error(reply: Any) -> None:
    """As redis-py's parser: an error that says the connection is unusable (LOADING, say) is
    raised, not a reply."""
    if isinstance(reply, rexc.ConnectionError):
        raise reply
    if isinstance(reply, list) and reply and isinstance(reply[0], rexc.ConnectionError):
        raise reply[0]


def _retrieved(task: asyncio.Task[_Link]) -> None:
    # An opening whose callers all gave up: its failure is theirs, not an unretrieved one.
    if not task.cancelled():
        task.exception()


def _packed(commands: Sequence[Command]) -> bytes:
    # hiredis's packer: the same bytes as redis-py's, in C (~1 µs a command instead of ~7).
    # Most requests are one command: packed without a generator and a join.
    if len(commands) == 1:
        return _pack(commands[0])
    return b"".join([_pack(command) for command in commands])


def _pack(command: Command) -> bytes:
    packed: bytes = hiredis.pack_command(command if type(command) is tuple else tuple(command))
    return packed


def _reader(conn: AbstractConnection) -> Callable[[], Awaitable[Any]]:
    """What reads the connection's next reply: its parser's `read_response` when the
    connection's class is redis-py's own. redis-py's `read_response` wraps it, per reply, in
    what the line does not need: a read timeout (none: the line's watch bounds its reads), the
    host's name for an error message, and a reply error raised, which the reader takes as a
    reply anyway. A class with its own `read_response` (fakeredis's) is read through it."""
    if type(conn).read_response is AbstractConnection.read_response:
        # Every parser of redis.asyncio has one; BaseParser does not declare it.
        parser = conn._parser
        read: Callable[[], Awaitable[Any]] = parser.read_response  # type: ignore[attr-defined]
        return read
    return conn.read_response


def _as_connection_error(exc: BaseException) -> BaseException:
    if isinstance(exc, rexc.ConnectionError | rexc.TimeoutError):
        return exc
    return rexc.ConnectionError(f"the connection to redis failed: {type(exc).__name__}: {exc}")
