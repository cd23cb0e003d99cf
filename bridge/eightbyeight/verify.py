"""Verify 8x8 webhook signatures (spec §3.9), with the public keys cached by `kid`.

Only a key 8x8 itself serves can make a signature valid, so a forged event can at worst name
a `kid` 8x8 does not know. What such kids can cost 8x8 is bounded three ways: a kid 8x8 said
it does not know, or whose fetch failed, is not asked for again for a while; concurrent events
with one new kid share a single fetch; and fetches for new kids are rate-limited per process
(a token bucket), so a flood of distinct forged kids costs about one fetch per second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.eightbyeight.signature import (
    HEADER_SIGNATURE,
    SIGNED_HEADER_NAMES,
    SignedHeaders,
    detached_payload,
    jwk_to_public_key,
    parse_jws,
    verify_jws,
)
from bridge.errors import NotFound, SignatureError, UpstreamError
from bridge.token_bucket import TokenBucket

UNKNOWN_KID_TTL_S = 30.0
# Short: the event may be genuine (answered 503, 8x8 retries), and its key must be found soon.
FAILED_FETCH_TTL_S = 5.0
MAX_UNKNOWN_KIDS = 10_000  # bounds the memory forged kids can take
MAX_KID_CHARS = 256
# New kids are rare (8x8 rotates its key now and then): one lookup per second for kids not seen
# before is plenty for 8x8 and caps what a flood of forged kids can make us ask of it (a lookup
# is one request, two on the gateway when its path does not know the kid). Refused lookups are
# answered 503, so a genuine new kid caught behind forged ones gets through on 8x8's retry.
KEY_FETCHES_PER_S = 1.0
KEY_FETCH_BURST = 1


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
        tenant_id: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch_jwk = fetch_jwk
        self._max_skew_ms = max_skew_s * 1000
        self._clock = clock
        self._tenant_id = tenant_id
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._unknown = _ExpiringKids(monotonic)  # 8x8 said no, or served an unusable key
        self._failed = _ExpiringKids(monotonic)  # the fetch failed (8x8 down or erroring)
        self._fetches = TokenBucket(KEY_FETCHES_PER_S, KEY_FETCH_BURST, monotonic=monotonic)
        self._inflight: dict[str, asyncio.Task[rsa.RSAPublicKey]] = {}

    async def verify(self, body: bytes, headers: Mapping[str, str]) -> SignedHeaders:
        """Verify one event.

        Args:
            body: The raw request body, exactly as received (its CRC32 is signed).
            headers: The request headers; names are matched case-insensitively. A multidict
                (aiohttp's request.headers) is read whole: a repeated signed header is refused.

        Returns:
            The signed header values (event id, tenant, ...), now trustworthy.

        Raises:
            KeyFetchUnavailable: The key could not be fetched for a transient reason.
            SignatureError: A header is missing, repeated or malformed, the tenant is not
                ours, the JWS is malformed or not RS256 with b64=false, the kid is unknown to
                8x8, the transmission time is outside the allowed skew, or the signature does
                not verify.
        """
        lowered = _single_signed_headers(headers)
        signature = lowered.get(HEADER_SIGNATURE)
        if not signature:
            raise SignatureError(f"missing header {HEADER_SIGNATURE}")
        signed = SignedHeaders.from_headers(lowered)
        jws = parse_jws(signature)
        self._check_time(signed.transmission_time_ms)
        if self._tenant_id is not None and signed.tenant_id != self._tenant_id:
            # Checked before the key fetch, like the time: it needs no key to refuse.
            raise SignatureError("x-8x8-tenant-id is not this deployment's tenant")
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
        if kid in self._unknown:
            raise SignatureError("unknown signing key")
        if kid in self._failed:
            raise KeyFetchUnavailable("signing key fetch failed recently")
        task = self._inflight.get(kid)
        if task is None:
            if not self._fetches.take():
                # A genuine new kid in a flood of forged ones waits for 8x8's retry.
                raise KeyFetchUnavailable("too many new signing keys; fetch rate-limited")
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
            self._unknown.remember(kid, UNKNOWN_KID_TTL_S)
            raise SignatureError("unknown signing key") from None
        except UpstreamError as exc:
            self._failed.remember(kid, FAILED_FETCH_TTL_S)
            raise KeyFetchUnavailable(f"signing key unavailable: {exc}") from None
        try:
            key = _key_from_jwk(kid, jwk)
        except SignatureError:
            # 8x8 served something unusable: no better next time
            self._unknown.remember(kid, UNKNOWN_KID_TTL_S)
            raise
        self._keys[kid] = key
        return key


class _ExpiringKids:
    """Kids remembered for a while, at most MAX_UNKNOWN_KIDS of them (forged kids are free)."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._until: dict[str, float] = {}

    def __contains__(self, kid: str) -> bool:
        return self._until.get(kid, 0.0) > self._monotonic()

    def remember(self, kid: str, ttl_s: float) -> None:
        now = self._monotonic()
        if len(self._until) >= MAX_UNKNOWN_KIDS:
            self._until = {k: t for k, t in self._until.items() if t > now}
        if len(self._until) < MAX_UNKNOWN_KIDS:
            self._until[kid] = now + ttl_s


def _single_signed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased headers; SignatureError if a signed one appears twice. Otherwise a second
    `x-8x8-event-id` could be the one verified while the other one is used (or vice versa)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        # A multidict (aiohttp's request headers) matches names case-insensitively already:
        # look up the six signed names instead of copying and lower-casing every header.
        found: dict[str, str] = {}
        for name in SIGNED_HEADER_NAMES:
            values = getall(name, ())
            if len(values) > 1:
                raise SignatureError(f"header {name} is repeated")
            if values:
                found[name] = values[0]
        return found
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        name = name.lower()
        if name in SIGNED_HEADER_NAMES and name in lowered:
            raise SignatureError(f"header {name} is repeated")
        lowered[name] = value
    return lowered


def _key_from_jwk(kid: str, jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    served_kid = jwk.get("kid")
    if served_kid is not None and served_kid != kid:
        raise SignatureError("8x8 served a JWK for another kid")
    return jwk_to_public_key(jwk)
