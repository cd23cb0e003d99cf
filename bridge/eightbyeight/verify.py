"""Verify 8x8 webhook signatures (spec §3.9), with the public keys cached by `kid`.

Only a key 8x8 itself serves can make a signature valid, so a forged event can at worst name
a `kid` 8x8 does not know. Such kids are remembered for a while, so forged events cannot make
us ask 8x8 again and again; concurrent events with one new kid share a single fetch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.eightbyeight.signature import (
    HEADER_SIGNATURE,
    SignedHeaders,
    detached_payload,
    jwk_to_public_key,
    parse_jws,
    verify_jws,
)
from bridge.errors import NotFound, SignatureError, UpstreamError

UNKNOWN_KID_TTL_S = 30.0
MAX_UNKNOWN_KIDS = 10_000  # bounds the memory forged kids can take
MAX_KID_CHARS = 256


class KeyFetchUnavailable(SignatureError):
    """The signing key could not be fetched because 8x8 is unreachable or failing. The event
    may well be genuine: answer 503 so 8x8 retries, not 401."""


class WebhookVerifier:
    """Checks the JWS of each webhook event against 8x8's public key for its `kid`."""

    def __init__(
        self,
        fetch_jwk: Callable[[str], Awaitable[dict[str, Any]]],
        max_skew_s: int,
        clock: Callable[[], float] = time.time,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_jwk = fetch_jwk
        self._max_skew_ms = max_skew_s * 1000
        self._clock = clock
        self._monotonic = monotonic
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._unknown_until: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Task[rsa.RSAPublicKey]] = {}

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> SignedHeaders:
        """Verify one event.

        Args:
            body: The raw request body, exactly as received (its CRC32 is signed).
            headers: The request headers; names are matched case-insensitively.

        Returns:
            The signed header values (event id, tenant, ...), now trustworthy.

        Raises:
            KeyFetchUnavailable: The key could not be fetched for a transient reason.
            SignatureError: A header is missing or malformed, the JWS is malformed or not
                RS256 with b64=false, the kid is unknown to 8x8, the transmission time is
                outside the allowed skew, or the signature does not verify.
        """
        lowered = {name.lower(): value for name, value in headers.items()}
        signature = lowered.get(HEADER_SIGNATURE)
        if not signature:
            raise SignatureError(f"missing header {HEADER_SIGNATURE}")
        signed = SignedHeaders.from_headers(lowered)
        jws = parse_jws(signature)
        self._check_time(signed.transmission_time_ms)
        key = await self._public_key(jws.kid)
        verify_jws(key, jws, detached_payload(body, signed))
        return signed

    def _check_time(self, transmission_time_ms: int) -> None:
        # Checked before the key is fetched: a replayed old event costs no request to 8x8.
        skew_ms = abs(self._clock() * 1000 - transmission_time_ms)
        if skew_ms > self._max_skew_ms:
            raise SignatureError("x-8x8-transmission-time is outside the allowed clock skew")

    async def _public_key(self, kid: str) -> rsa.RSAPublicKey:
        if (key := self._keys.get(kid)) is not None:
            return key
        if len(kid) > MAX_KID_CHARS:
            raise SignatureError("JWS kid is too long")
        if self._unknown_until.get(kid, 0.0) > self._monotonic():
            raise SignatureError("unknown signing key")
        task = self._inflight.get(kid)
        if task is None:
            task = asyncio.create_task(self._load(kid))
            self._inflight[kid] = task
            task.add_done_callback(lambda done: self._settle(kid, done))
        # Shielded: one waiter giving up (its request cancelled) must not cancel the fetch
        # the other waiters share.
        return await asyncio.shield(task)

    def _settle(self, kid: str, task: asyncio.Task[rsa.RSAPublicKey]) -> None:
        self._inflight.pop(kid, None)
        if not task.cancelled():
            task.exception()  # marks it retrieved even if every waiter was cancelled

    async def _load(self, kid: str) -> rsa.RSAPublicKey:
        try:
            jwk = await self._fetch_jwk(kid)
        except NotFound:
            self._remember_unknown(kid)
            raise SignatureError("unknown signing key") from None
        except UpstreamError as exc:
            raise KeyFetchUnavailable(f"signing key unavailable: {exc}") from None
        try:
            key = _key_from_jwk(kid, jwk)
        except SignatureError:
            self._remember_unknown(kid)  # 8x8 served something unusable: no better next time
            raise
        self._keys[kid] = key
        return key

    def _remember_unknown(self, kid: str) -> None:
        now = self._monotonic()
        if len(self._unknown_until) >= MAX_UNKNOWN_KIDS:
            self._unknown_until = {k: t for k, t in self._unknown_until.items() if t > now}
        if len(self._unknown_until) < MAX_UNKNOWN_KIDS:
            self._unknown_until[kid] = now + UNKNOWN_KID_TTL_S


def _key_from_jwk(kid: str, jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    served_kid = jwk.get("kid")
    if served_kid is not None and served_kid != kid:
        raise SignatureError("8x8 served a JWK for another kid")
    return jwk_to_public_key(jwk)
