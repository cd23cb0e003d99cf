"""Credentials for the two API families (spec §1).

Chat Gateway: a static `x-api-key` (plus `X-8x8-Tenant` when the tenant is known).
Chat API v2: an OAuth client-credentials token, fetched once and reused until shortly before
it expires; 8x8 asks clients not to fetch a token per request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from bridge.eightbyeight.errors import TokenRejected
from bridge.errors import PermanentUpstreamError, UpstreamError

if TYPE_CHECKING:
    from bridge.eightbyeight.transport import Transport

log = logging.getLogger(__name__)

REFRESH_MARGIN_S = 60.0  # renew a minute early...
SHORT_TOKEN_SHARE = 0.1  # ...or, for tokens shorter than 10 minutes, 10% of the lifetime early
DEFAULT_LIFETIME_S = 300.0  # if 8x8 ever omits expires_in: short, and a 401 refetches anyway


class Auth(Protocol):
    """What `Caller` needs from a credential scheme."""

    async def headers(self) -> dict[str, str]:
        """The headers that authenticate one request."""
        ...

    async def rejected(self, error: UpstreamError, sent: Mapping[str, str]) -> bool:
        """Told that a request sent with the headers `sent` failed with `error`; True when
        fresh credentials are worth one more try of that request."""
        ...


class ApiKeyAuth:
    """Chat Gateway: the same static headers on every request."""

    def __init__(self, api_key: SecretStr, tenant_id: str | None = None) -> None:
        self._api_key = api_key
        self._tenant_id = tenant_id

    async def headers(self) -> dict[str, str]:
        """`x-api-key`, and `X-8x8-Tenant` when a tenant is configured (spec §1.2, §6.19)."""
        headers = {"x-api-key": self._api_key.get_secret_value()}
        if self._tenant_id:
            headers["X-8x8-Tenant"] = self._tenant_id
        return headers

    async def rejected(self, error: UpstreamError, sent: Mapping[str, str]) -> bool:
        """Never: a refused static key stays refused."""
        return False


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    refresh_at: float  # on the monotonic clock


class TokenAuth:
    """Chat API v2: a cached bearer token, single-flight, renewed before it expires."""

    def __init__(
        self,
        transport: Transport,
        token_url: str,
        api_key: SecretStr,
        api_secret: SecretStr,
        *,
        request_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._token_url = token_url
        self._basic = basic_auth(api_key, api_secret)
        self._timeout_s = request_timeout_s
        self._clock = clock
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    async def headers(self) -> dict[str, str]:
        """`Authorization: Bearer <token>` (8x8 calls the type "BearerToken"; the scheme
        on the wire is still "Bearer", spec §1.1)."""
        return {"Authorization": f"Bearer {await self.token()}"}

    async def token(self) -> str:
        """The current token, fetched first if there is none or it is about to expire.
        Concurrent callers share one fetch: the lock holder fetches, the rest then find the
        fresh token in the cache."""
        if (cached := self._fresh()) is not None:
            return cached
        async with self._lock:
            if (cached := self._fresh()) is not None:
                return cached
            self._token = await self._fetch()
            return self._token.value

    async def rejected(self, error: UpstreamError, sent: Mapping[str, str]) -> bool:
        """True for a 401 with the Apigee fault (invalid or expired token). The token is
        dropped only if it is the one that was refused: when many calls fail on one expired
        token, the first drops it and the others reuse the replacement."""
        if not isinstance(error, TokenRejected):
            return False
        if self._token is not None and sent.get("Authorization") == f"Bearer {self._token.value}":
            self._token = None
        return True

    def _fresh(self) -> str | None:
        token = self._token
        if token is not None and self._clock() < token.refresh_at:
            return token.value
        return None

    async def _fetch(self) -> _Token:
        body = await self._transport.request(
            "token",
            "POST",
            self._token_url,
            timeout_s=self._timeout_s,
            headers={"Authorization": self._basic},
            form={"grant_type": "client_credentials"},
        )
        token = parse_token(body, self._clock())
        log.debug("8x8 token fetched; renewing in %.0f s", token.refresh_at - self._clock())
        return token


def basic_auth(api_key: SecretStr, api_secret: SecretStr) -> str:
    """`Basic base64(key:secret)` for the token request (spec §1.1)."""
    pair = f"{api_key.get_secret_value()}:{api_secret.get_secret_value()}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


def parse_token(body: Any, now: float) -> _Token:
    """The token and when to renew it, from a token response (whose numbers are strings)."""
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise PermanentUpstreamError("8x8 token: response has no access_token")
    if not body["access_token"]:
        raise PermanentUpstreamError("8x8 token: response has an empty access_token")
    lifetime = _lifetime(body.get("expires_in"))
    margin = min(REFRESH_MARGIN_S, lifetime * SHORT_TOKEN_SHARE)
    return _Token(body["access_token"], now + lifetime - margin)


def _lifetime(expires_in: Any) -> float:
    """`expires_in` in seconds; 8x8 sends it as a string ("1799"), and we accept a number."""
    try:
        seconds = float(expires_in)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:  # also catches NaN
        log.warning(
            "8x8 token response has no usable expires_in; assuming %.0f s", DEFAULT_LIFETIME_S
        )
        return DEFAULT_LIFETIME_S
    return seconds
