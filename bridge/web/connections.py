"""The listening socket of `serve`, with a ceiling on open connections.

Each connection holds a file descriptor. Without a ceiling, a client that opens connections
until the process's limit leaves none for Redis, 8x8 or Rasa (the relay then loses its store)
and asyncio logs an accept error per attempt. Below the ceiling nothing changes; above it a
new connection gets a short 503 and is closed at once, and a warning is logged at most every
few seconds with the count refused since the last one.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time

from aiohttp import web

log = logging.getLogger(__name__)

# Descriptors kept for what the process opens itself: the Redis pool, the 8x8 and Rasa
# client pools (aiohttp allows 100 connections per session), key fetches, log files.
RESERVED_FDS = 256
WARN_EVERY_S = 10.0
_REFUSAL_BODY = b'{"result": "too many connections"}'
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


def connection_ceiling() -> int:
    """How many client connections to hold at most, from the open-files limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 65536
    return max(soft - RESERVED_FDS, soft // 2)


class _Refuse(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL)
        transport.close()


class _Refusals:
    """Counts refused connections; logs one warning per WARN_EVERY_S at most."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.count = 0
        self._unlogged = 0
        self._last_log = float("-inf")

    def note(self) -> None:
        self.count += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= WARN_EVERY_S:
            log.warning(
                "connections_refused", extra={"refused": self._unlogged, "ceiling": self.ceiling}
            )
            self._unlogged = 0
            self._last_log = now


class CappedSite(web.TCPSite):
    """A TCPSite that refuses connections beyond `ceiling` instead of running out of fds."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, ceiling: int | None = None
    ) -> None:
        super().__init__(runner, host, port)
        self.refusals = _Refusals(ceiling if ceiling is not None else connection_ceiling())

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site; TCPSite.start would bind
        server = self._runner.server
        assert server is not None
        refusals = self.refusals

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= refusals.ceiling:
                refusals.note()
                return _Refuse()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog
        )
