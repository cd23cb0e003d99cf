"""The action token: who may call the action routes and read the metrics.

Rasa's `endpoints.yml` `action_endpoint: token:` sends the token as the query parameter
`token` (rasa/utils/endpoints.py, `EndpointConfig.combine_parameters`); Prometheus and other
clients send `Authorization: Bearer <token>`. Several tokens may be configured at once, so a
token is rotated by adding the new one, moving the callers, then removing the old one.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

log = logging.getLogger(__name__)

PROTECTED = frozenset({"/webhook", "/actions", "/metrics"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ActionToken:
    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(t.encode("utf-8") for t in tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def allows(self, request: web.Request) -> bool:
        offered = _offered(request)
        if offered is None:
            return False
        # Compare with every configured token, without stopping at a match: the time taken
        # says nothing about which token, or which prefix, was right.
        matches = [hmac.compare_digest(offered, token) for token in self._tokens]
        return any(matches)

    def middleware(self) -> Middleware:
        @web.middleware
        async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.enabled and request.path in PROTECTED and not self.allows(request):
                log.debug("action_token_refused", extra={"path": request.path})
                return web.json_response(
                    {"result": "missing or invalid action token"},
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="handoff-bridge"'},
                )
            return await handler(request)

        return require_token


def _offered(request: web.Request) -> bytes | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip().encode("utf-8", "surrogateescape")
    token = request.query.get("token")
    return token.encode("utf-8", "surrogateescape") if token else None
