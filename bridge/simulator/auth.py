"""Who may call: the gateway's `x-api-key` (+ `X-8x8-Tenant`), v2's OAuth tokens (spec §1).

Each check raises the `ApiProblem` 8x8 documents for its failure.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridge.simulator.errors import forbidden, unauthorized


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class IssuedToken:
    value: str
    issued_at_ms: int
    expires_in_s: int  # what the response says (whole seconds, rounded up)


class TokenIssuer:
    """Chat API v2 bearer tokens that really expire after `ttl_s`."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._expiry: dict[str, float] = {}

    def issue(self) -> IssuedToken:
        now = self._clock()
        # Forget expired tokens here, so the table stays as small as the live set.
        self._expiry = {t: exp for t, exp in self._expiry.items() if exp > now}
        value = secrets.token_urlsafe(21)
        self._expiry[value] = now + self._ttl_s
        return IssuedToken(value, time.time_ns() // 1_000_000, math.ceil(self._ttl_s))

    def valid(self, token: str) -> bool:
        expiry = self._expiry.get(token)
        return expiry is not None and expiry > self._clock()


def check_basic(headers: Mapping[str, str], key: str, secret: str) -> None:
    """The token endpoint's `Authorization: Basic base64(key:secret)`."""
    scheme, _, encoded = headers.get("Authorization", "").partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise unauthorized("token") from None
    given_key, sep, given_secret = decoded.partition(":")
    ok = sep and _same(given_key, key) and _same(given_secret, secret)
    if scheme.lower() != "basic" or not ok:
        raise unauthorized("token")


def check_bearer(headers: Mapping[str, str], tokens: TokenIssuer) -> None:
    """v2's `Authorization: Bearer <token>`; unknown and expired tokens get the same 401."""
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not tokens.valid(token.strip()):
        raise unauthorized("chat-v2")


def check_api_key(headers: Mapping[str, str], key: str, tenant_id: str, customer_id: str) -> None:
    """The gateway's `x-api-key`, and `X-8x8-Tenant` when sent (it is optional)."""
    if not _same(headers.get("x-api-key", ""), key):
        raise unauthorized("gateway")
    tenant = headers.get("X-8x8-Tenant")
    if tenant is not None and tenant != tenant_id:
        raise forbidden("gateway", tenant_id=tenant, customer_id=customer_id)


def check_path_tenant(tenant: str, tenant_id: str, customer_id: str) -> None:
    """v2 carries the tenant in the path; another tenant is a 403."""
    if tenant != tenant_id:
        raise forbidden("chat-v2", tenant_id=tenant, customer_id=customer_id)
