"""The push into Rasa's tracker: a prepared JSON POST over pooled HTTP/1.1 keep-alive connections,
answered with the status and the start of the body.

Why not aiohttp: one push per agent message is serve's hot path, and aiohttp's client spends
about 250 µs of CPU per request on what the push never needs (cookies, redirects, headers to
build and parse into multidicts, tracing hooks, a response object). Here the request's constant
bytes are encoded once, the answer is parsed by llhttp (`httptools`) and only its status line,
framing and first bytes are looked at.

What it guarantees: a request is written at most once. Nothing here retries: once a byte of a
POST may have reached Rasa, Rasa may have appended its events, and only the relay (which looks
in the tracker for the push's marker first) may push again. A connection is reused only after
a complete answer that allows keep-alive; one that failed, timed out, was cancelled mid-request
or got bytes it did not ask for is closed, never pooled. An idle connection the server closed
(its keep-alive timeout) is seen by `connection_lost` and dropped before it is picked; one idle
past the reuse bound is closed by a timer, in the quiet after its last answer (`_reap`).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast
from urllib.parse import SplitResult, quote, urlsplit

import httptools

# The pool's bound: aiohttp's default connector's, which the relay's lanes were sized against.
DEFAULT_LIMIT = 100
# At most this much of an answer is read: Rasa's answers to a push are small (include_events=NONE);
# past it the status is all we need, and the connection is closed rather than drained.
MAX_ANSWER_BYTES = 64 * 1024
# At most this much of an answer's status line and headers (interim answers included): llhttp
# keeps a header's bytes until its end, so a broken server's endless head would grow unbounded.
MAX_HEAD_BYTES = 64 * 1024
# Enough bytes for the 200 characters of an error's detail, whatever their encoding.
HEAD_BYTES = 800
# An idle connection is reused only this long after its last answer. Sanic (Rasa's server)
# closes one idle for 5 s, its timer started before our clock's: a push written to a connection
# as the server closes it would fail after Rasa may have read it (an ambiguous failure).
IDLE_REUSE_S = 4.0
# The reaper closes an idle connection this long after it passed the reuse bound, at the
# latest: a timer that fired a hair early would otherwise find nothing to close, again and again.
_REAP_SLACK_S = 0.05
# How long close() waits for the closed connections' sockets to be released.
_CLOSE_WAIT_S = 1.0


class BadAnswer(Exception):
    """The server's answer is not HTTP/1.x we can read (malformed, an upgrade)."""


class BadURL(ValueError):
    """The base URL is not an absolute http or https URL."""


class ServerDisconnected(ConnectionError):
    """The connection closed before the answer was complete."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._answer: asyncio.Future[tuple[int, bytes]] | None = None
        self._status = 0
        self._head = b""
        self._size = 0
        self._head_size = 0  # bytes read while no final answer's headers were complete
        self._framed = False  # Content-Length or chunked: the body does not run to EOF
        self.reusable = False
        self.lost = False
        self.idle_since = 0.0  # the loop's time when last put in the pool
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def usable(self) -> bool:
        # Unwritten request bytes left: answered early (before reading our body), the server
        # may read the rest as the next request.
        return (
            self.reusable
            and not self.lost
            and self._transport is not None
            and not self._transport.is_closing()
            and not self._transport.get_write_buffer_size()
        )

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None
        self._answer = self.gone.get_loop().create_future()
        self._status, self._head, self._size, self._framed = 0, b"", 0, False
        self._head_size = 0
        self.reusable = False
        self._transport.write(request)
        return self._answer

    def close(self) -> None:
        self.reusable = False
        if self._transport is None:
            return
        if self._transport.get_write_buffer_size():
            # Request bytes still unwritten (answered early): a graceful close would wait for
            # a server that may never read them, the connection and its buffer kept meanwhile.
            self._transport.abort()
        else:
            self._transport.close()

    def abort(self) -> None:
        """Mid-request (cancelled, timed out): the connection's state is unknown, drop it now."""
        self.reusable = False
        if self._transport is not None:
            self._transport.abort()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        if not self.gone.done():
            self.gone.set_result(None)
        answer = self._answer
        if answer is None or answer.done():
            return
        if self._status >= 200 and not self._framed:
            self._finish(keep=False)  # a body delimited by the end of the connection (HTTP/1.0)
        else:
            lost = ServerDisconnected("connection closed before the answer was complete")
            lost.__cause__ = exc
            answer.set_exception(lost)

    def data_received(self, data: bytes) -> None:
        answer = self._answer
        if answer is None or answer.done():
            self.close()  # bytes nobody asked for: the connection's state is unknown
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self.close()
            if not answer.done():
                answer.set_exception(BadAnswer(type(exc).__name__))
            return
        if self._status == 0:  # all of `data` was head: its headers are not complete yet
            self._head_size += len(data)
            if self._head_size > MAX_HEAD_BYTES and not answer.done():
                self.close()
                answer.set_exception(BadAnswer("head too large"))

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self._answer is None or self._answer.done():
            self.close()  # a second answer to one request

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length":
            self._framed = True
        elif name == b"transfer-encoding":
            # As llhttp reads it: chunked last frames the body; any other runs to the end.
            self._framed = value.rsplit(b",", 1)[-1].strip().lower() == b"chunked"

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self._size < HEAD_BYTES:
            self._head += body[: HEAD_BYTES - self._size]
        self._size += len(body)
        if self._size > MAX_ANSWER_BYTES:
            self._finish(keep=False)
            self.close()

    def on_message_complete(self) -> None:
        if self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._status, self._head, self._size, self._framed = 0, b"", 0, False
            return
        self._finish(keep=self._parser.should_keep_alive())

    def _finish(self, *, keep: bool) -> None:
        answer = self._answer
        if answer is None or answer.done():
            return
        self.reusable = keep
        answer.set_result((self._status, self._head))


class PushLine:
    """POSTs JSON bodies to one origin (`base_url`, a path prefix allowed) over a bounded LIFO
    pool of keep-alive connections. `timeout_s` bounds each post whole: waiting for a pool slot,
    connecting, writing, and the answer."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        limit: int = DEFAULT_LIMIT,
        ssl_context: ssl.SSLContext | None = None,
        idle_reuse_s: float = IDLE_REUSE_S,
    ) -> None:
        parts, port = parse_base_url(base_url)
        tls = parts.scheme == "https"
        default_port = 443 if tls else 80
        self._host = cast(str, parts.hostname)
        self._port = port or default_port
        self._ssl = (ssl_context or ssl.create_default_context()) if tls else None
        name = f"[{self._host}]" if ":" in self._host else self._host
        authority = name if self._port == default_port else f"{name}:{self._port}"
        prefix = quote(parts.path.rstrip("/"), safe="/%:@!$&'()*+,;=~")
        self._start = b"POST " + prefix.encode("ascii")
        self._headers = (
            b" HTTP/1.1\r\nHost: "
            + _ascii_host(authority)
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
        )
        self._timeout_s = timeout_s
        self._idle_reuse_s = idle_reuse_s
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []  # oldest first: pushes take the newest
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        """POST `body` to `target` (path under the base URL's, and query; percent-encoded).
        Returns the answer's status and its body's first bytes. Raises OSError (TimeoutError,
        ConnectionError, ssl.SSLError, ServerDisconnected) or BadAnswer."""
        request = b"".join(
            (self._start, target.encode("ascii"), self._headers, b"%d\r\n\r\n" % len(body), body)
        )
        async with asyncio.timeout(self._timeout_s):
            await self._slots.acquire()
            try:
                return await self._exchange(request)
            finally:
                self._slots.release()

    async def close(self) -> None:
        """Closes every idle connection; one in use is closed when its answer is in."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if idle:
            await asyncio.wait([c.gone for c in idle], timeout=_CLOSE_WAIT_S)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        conn = self._reuse() or await self._connect()
        try:
            answer = await conn.send(request)
        except BaseException:
            conn.abort()
            raise
        if conn.usable() and not self._closed:
            self._pool(conn)
        else:
            conn.close()
        return answer

    def _pool(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        conn.idle_since = loop.time()
        self._idle.append(conn)
        if self._reaper is None:
            self._reaper = loop.call_later(self._idle_reuse_s + _REAP_SLACK_S, self._reap)

    def _reap(self) -> None:
        """Close the idle connections past the reuse bound, then wait for the next one to pass
        it. Left to the next push, a pool grown by a burst went stale all at once after a quiet,
        and that push closed every connection first: ~100 closes in one step of the loop, and
        the events behind it ~10 ms late (seen at a paced phase's start after a saturated one)."""
        self._reaper = None
        loop = asyncio.get_running_loop()
        stale_before = loop.time() - self._idle_reuse_s
        fresh = next(
            (i for i, c in enumerate(self._idle) if c.idle_since > stale_before), len(self._idle)
        )
        stale, self._idle = self._idle[:fresh], self._idle[fresh:]
        for conn in stale:
            conn.close()
        if self._idle:
            due = self._idle[0].idle_since + self._idle_reuse_s + _REAP_SLACK_S
            self._reaper = loop.call_at(due, self._reap)

    def _reuse(self) -> _Connection | None:
        """The most recently used idle connection still open and not idle too long (LIFO: the
        older ones may be closed by the server meanwhile)."""
        if not self._idle:
            return None
        fresh_since = asyncio.get_running_loop().time() - self._idle_reuse_s
        while self._idle:
            conn = self._idle.pop()
            if conn.idle_since > fresh_since and conn.usable():
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        return conn


def parse_base_url(base_url: str) -> tuple[SplitResult, int | None]:
    """The Rasa base URL's parts and port, or BadURL (a ValueError: settings report it as the
    URL's fault). Besides a scheme and a host: a port that is a number in range, a host name
    getaddrinfo can encode (IDNA refuses an empty or over-long label with a ValueError, not the
    OSError a push's failures are), and nothing a request would have to drop: no credentials,
    no query, no fragment (Rasa's token is `RASA_TOKEN`, sent with each call)."""
    try:
        parts = urlsplit(base_url)
        port = parts.port
        if parts.hostname is not None:
            parts.hostname.encode("idna")
    except ValueError:
        raise BadURL("the Rasa URL is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "\0" in parts.hostname:
        raise BadURL("the Rasa URL must be an absolute http or https URL")
    if parts.username is not None or parts.password is not None:
        raise BadURL("the Rasa URL must not carry a user or password")
    if parts.query or parts.fragment or base_url.rstrip("/").endswith(("?", "#")):
        raise BadURL("the Rasa URL must not carry a query or fragment (the token: RASA_TOKEN)")
    return parts, port


def _ascii_host(authority: str) -> bytes:
    return authority.encode("ascii") if authority.isascii() else authority.encode("idna")
