"""Bounded work per request: what a client can make the bridge read, inflate and wait for.

- Content-Encoding: 8x8 sends plain JSON, so `POST /8x8/events` (and every route but the action
  endpoint) refuses an encoded body with 415 before reading it. Rasa deflates its action calls
  when COMPRESS_ACTION_SERVER_REQUEST is on, so `POST /webhook` accepts deflate (zlib or raw)
  and gzip, inflated here with a hard cap on the output: a bomb costs at most the cap.
  aiohttp's own inflation is switched off (`server_options`), as older aiohttp versions
  inflate a body whole before any limit applies.
- Time: an idle connection, or one still sending its request line and headers, is closed by
  aiohttp's keep-alive timer; a request body that has not fully arrived within the same time
  is cut with 408 (`body_deadline`). Both come from BRIDGE_CLIENT_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Routes whose clients may compress their bodies (Rasa's action calls).
ENCODED_ROUTES = frozenset({"/webhook"})
_IDENTITY = frozenset({"", "identity"})
_WBITS = {"gzip": 31, "x-gzip": 31}  # deflate: zlib or raw, see _deflate_wbits


def server_options(client_timeout_s: float) -> dict[str, Any]:
    """Keyword arguments for aiohttp's AppRunner/TestServer serving the bridge's app."""
    return {
        "auto_decompress": False,  # inflated by decoded_body(), under a cap
        # Also the deadline for a new connection's first request line and headers: aiohttp
        # arms it at connection_made and closes a connection still waiting for a request.
        "keepalive_timeout": client_timeout_s,
        # After an early answer (413, 415, 408) the rest of the body is not read: close.
        "lingering_time": 0.0,
    }


class BodyTooLarge(Exception):
    pass


def body_deadline(timeout_s: float) -> Middleware:
    """Middleware: a request body must have arrived `timeout_s` after its headers did.

    The timer only fails the body stream; a handler that already has its body, and is busy
    with 8x8 or Redis, is never interrupted by it."""

    @web.middleware
    async def deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content.is_eof():
            return await handler(request)
        timer = asyncio.get_running_loop().call_later(timeout_s, _expire, request)
        try:
            return await handler(request)
        finally:
            timer.cancel()

    return deadline


def _expire(request: web.Request) -> None:
    if not request.content.is_eof():
        request.content.set_exception(
            web.HTTPRequestTimeout(reason="request body not received in time")
        )


@web.middleware
async def refuse_encodings(request: web.Request, handler: Handler) -> web.StreamResponse:
    """415 for a Content-Encoding the route does not take, before its body is read."""
    if hdrs.CONTENT_ENCODING not in request.headers:  # as sent by 8x8: nothing to normalise
        return await handler(request)
    encoding = _encoding(request)
    if encoding not in _IDENTITY and (
        request.path not in ENCODED_ROUTES or encoding not in ("deflate", *_WBITS)
    ):
        raise web.HTTPUnsupportedMediaType(reason="Content-Encoding not accepted on this route")
    return await handler(request)


def _encoding(request: web.Request) -> str:
    return request.headers.get("Content-Encoding", "").strip().lower()


async def decoded_body(request: web.Request, limit: int) -> bytes:
    """The request body, inflated per Content-Encoding, never more than `limit` bytes.

    Raises HTTPRequestEntityTooLarge over the limit, HTTPBadRequest for a broken stream."""
    raw = await request.read()  # the wire bytes, capped by the app's client_max_size
    encoding = _encoding(request)
    if encoding in _IDENTITY:
        if len(raw) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(raw))
        return raw
    try:
        return inflate(raw, encoding, limit)
    except BodyTooLarge:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1) from None
    except zlib.error:
        raise web.HTTPBadRequest(reason=f"body is not valid {encoding} data") from None


def inflate(data: bytes, encoding: str, limit: int) -> bytes:
    """`data` inflated; BodyTooLarge as soon as the output would pass `limit`, zlib.error
    for a corrupt or truncated stream. Memory stays within `limit` whatever the ratio."""
    inflater = zlib.decompressobj(_WBITS.get(encoding, _deflate_wbits(data)))
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit:
        raise BodyTooLarge
    if not inflater.eof:
        raise zlib.error("truncated stream")
    return out


def _deflate_wbits(data: bytes) -> int:
    # HTTP's "deflate" is zlib-wrapped (RFC 9110), but some clients send raw deflate; aiohttp's
    # client (Rasa's) sends zlib. A zlib header has compression method 8 and a valid checksum.
    if len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0:
        return zlib.MAX_WBITS
    return -zlib.MAX_WBITS
