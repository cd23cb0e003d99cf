"""The wire under both 8x8 clients: one aiohttp session, timeouts, credentials, retries.

Every failure leaves here as one of the bridge's exceptions, and the split that matters most
is whether the request could have reached 8x8: a failed connect is `RequestNotSent` (safe to
repeat even a create), a timeout or disconnect after sending is an ambiguous
`RetryableUpstreamError` (repeating a create could open a second conversation).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import aiohttp

from bridge.eightbyeight.auth import Auth
from bridge.eightbyeight.errors import error_from_response
from bridge.errors import (
    PermanentUpstreamError,
    RequestNotSent,
    RetryableUpstreamError,
    UpstreamError,
)
from bridge.retry import RetryPolicy, retry

log = logging.getLogger(__name__)

# The connect phase gets a shorter deadline than the whole request, so that a connect which
# hangs ends as aiohttp's ConnectionTimeoutError ("never sent") rather than as the total
# timeout, which cannot tell connecting from waiting for the answer.
CONNECT_SHARE = 0.8
MIN_ATTEMPT_TIMEOUT_S = 0.05  # aiohttp reads a 0 timeout as "no timeout at all"


class Retry(Enum):
    """Which failures a call may be repeated after."""

    SAFE = "safe"  # reads, sends, leave, updates: any retryable failure
    UNSENT_ONLY = "unsent_only"  # creates: only if 8x8 never saw it, or said 429


@dataclass(frozen=True, slots=True)
class Body:
    """A request body: JSON (`json`) or an HTML form (`form`)."""

    json: Any = None
    form: Mapping[str, str] | None = None


class Transport:
    """Owns the aiohttp session for 8x8 calls (created lazily unless one is passed in) and
    performs single HTTP exchanges; `Caller` adds credentials and retries on top."""

    def __init__(
        self, *, session: aiohttp.ClientSession | None = None, accept: str = "application/json"
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._accept = accept

    async def request(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """A single HTTP exchange, no retries.

        Returns:
            The parsed JSON body, or None when it is empty (202/204).

        Raises:
            UpstreamError: The status mapped by `error_from_response`, or a connection error:
                `RequestNotSent` if connecting failed, else `RetryableUpstreamError`.
        """
        session = self._ensure_session()
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s * CONNECT_SHARE)
        started = time.monotonic()
        try:
            async with session.request(
                method,
                url,
                headers={"Accept": self._accept, **(headers or {})},
                json=body.json if body is not None and body.form is None else None,
                data=dict(body.form) if body is not None and body.form is not None else None,
                params=params,
                timeout=timeout,
            ) as response:
                raw = await response.read()
                status, response_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("8x8 %s %s failed: %r", operation, method, exc)
            raise _connection_error(operation, exc) from None
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("8x8 %s %s -> %d in %.0f ms", operation, method, status, elapsed_ms)
        if status >= 400:
            raise error_from_response(operation, status, raw, response_headers)
        return _json_or_none(operation, raw)

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        """Close the session if this transport created it (a passed-in one is the caller's)."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None


class Caller:
    """One logical 8x8 call: credentials, per-attempt timeouts, retries within the policy."""

    def __init__(
        self,
        transport: Transport,
        auth: Auth,
        *,
        request_timeout_s: float,
        policy: RetryPolicy,
    ) -> None:
        self._transport = transport
        self._auth = auth
        self._timeout_s = request_timeout_s
        self._policy = policy

    async def call(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        body: Body | None = None,
        params: Mapping[str, str] | None = None,
        retry_on: Retry = Retry.SAFE,
        authenticated: bool = True,
    ) -> Any:
        """Make the call, retrying as `retry_on` allows.

        Args:
            operation: Short name for errors and logs ("send_message").
            method: HTTP method.
            url: Absolute URL.
            body: Request body, if any.
            params: Query parameters.
            retry_on: Which failures may be retried (`Retry.UNSENT_ONLY` for creates).
            authenticated: False for the JWK endpoint, which takes no credentials.

        Returns:
            The parsed JSON response, or None for an empty body (202/204).

        Raises:
            UpstreamError: The mapped failure of the last attempt.
        """

        async def attempt(remaining_s: float) -> Any:
            timeout_s = max(MIN_ATTEMPT_TIMEOUT_S, min(self._timeout_s, remaining_s))
            if not authenticated:
                return await self._transport.request(
                    operation, method, url, timeout_s=timeout_s, body=body, params=params
                )
            return await self._with_credentials(operation, method, url, body, params, timeout_s)

        predicate = _retryable if retry_on is Retry.SAFE else _retryable_unsent
        return await retry(attempt, policy=self._policy, is_retryable=predicate)

    async def _with_credentials(
        self,
        operation: str,
        method: str,
        url: str,
        body: Body | None,
        params: Mapping[str, str] | None,
        timeout_s: float,
    ) -> Any:
        """One attempt. If 8x8 rejects a bearer token, get a new one and repeat once: a 401
        means 8x8 did not act on the request, so even a create may be repeated."""
        for final in (False, True):
            headers = await _credentials(self._auth)
            try:
                return await self._transport.request(
                    operation,
                    method,
                    url,
                    timeout_s=timeout_s,
                    headers=headers,
                    body=body,
                    params=params,
                )
            except UpstreamError as exc:
                if final or not await self._auth.rejected(exc, headers):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


async def _credentials(auth: Auth | None) -> dict[str, str]:
    """The auth headers; a transient failure to get them (token endpoint down) means the
    actual request was never sent, which makes even a create safe to retry."""
    if auth is None:
        return {}
    try:
        return await auth.headers()
    except RequestNotSent:
        raise
    except RetryableUpstreamError as exc:
        raise RequestNotSent(str(exc), status=exc.status, code=exc.code) from None


def _connection_error(operation: str, exc: Exception) -> UpstreamError:
    kind = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return RequestNotSent(f"8x8 {operation}: could not connect ({kind})")
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentUpstreamError(f"8x8 {operation}: invalid URL")
    return RetryableUpstreamError(f"8x8 {operation}: no complete response ({kind})")


def _json_or_none(operation: str, raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        # A success status with an unreadable body: 8x8 acted, so never worth repeating.
        raise PermanentUpstreamError(f"8x8 {operation}: response is not JSON") from None


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, RetryableUpstreamError)


def _retryable_unsent(exc: Exception) -> bool:
    return isinstance(exc, RequestNotSent) or (
        isinstance(exc, RetryableUpstreamError) and exc.status == 429
    )
