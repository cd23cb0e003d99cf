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
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import Any

import aiohttp

from bridge.eightbyeight.auth import Auth
from bridge.eightbyeight.errors import error_from_response
from bridge.errors import (
    NotFound,
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

    TRANSIENT = "transient"  # reads, sends, leave, updates, deletes: any transient failure
    UNSENT_ONLY = "unsent_only"  # creates: only if 8x8 never saw it, or answered 429


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
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """A single HTTP exchange, no retries.

        Returns:
            The parsed JSON body, or None when it is empty (202/204).

        Raises:
            UpstreamError: The status mapped by `error_from_response`, or a connection error:
                `RequestNotSent` if connecting failed, else `RetryableUpstreamError`.
        """
        timeout = aiohttp.ClientTimeout(total=timeout_s, connect=timeout_s * CONNECT_SHARE)
        started = time.monotonic()
        try:
            async with self._ensure_session().request(
                method,
                url,
                headers={"Accept": self._accept, **(headers or {})},
                json=json_body,
                data=dict(form) if form is not None else None,
                params=params,
                timeout=timeout,
            ) as response:
                raw = await response.read()
                status, response_headers = response.status, response.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("8x8 %s failed: %r", operation, exc)
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
        self, transport: Transport, auth: Auth, *, request_timeout_s: float, policy: RetryPolicy
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
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        retry_on: Retry = Retry.TRANSIENT,
        authenticated: bool = True,
        policy: RetryPolicy | None = None,
    ) -> Any:
        """Make the call, retrying as `retry_on` allows.

        Args:
            operation: Short name for errors and logs ("send_message").
            method: HTTP method.
            url: Absolute URL.
            json_body: JSON request body, if any.
            params: Query parameters.
            retry_on: Which failures may be retried (`Retry.UNSENT_ONLY` for creates).
            authenticated: False for the JWK endpoint, which takes no credentials.
            policy: Overrides the client's retry policy for this call.

        Returns:
            The parsed JSON response, or None for an empty body (202/204).

        Raises:
            UpstreamError: The mapped failure of the last attempt.
        """

        maybe_done = False  # an earlier attempt may have reached 8x8 and acted

        async def attempt(remaining_s: float) -> Any:
            nonlocal maybe_done
            timeout_s = max(MIN_ATTEMPT_TIMEOUT_S, min(self._timeout_s, remaining_s))

            async def send(headers: Mapping[str, str]) -> Any:
                return await self._transport.request(
                    operation,
                    method,
                    url,
                    timeout_s=timeout_s,
                    headers=headers,
                    json_body=json_body,
                    params=params,
                )

            try:
                return await self._authenticated(send) if authenticated else await send({})
            except NotFound:
                # A DELETE repeated after an ambiguous failure finds nothing to delete
                # because the first attempt did delete it: that is success, not an error.
                if method == "DELETE" and maybe_done:
                    return None
                raise
            except RetryableUpstreamError as exc:
                maybe_done = maybe_done or _may_have_acted(exc)
                raise

        predicate = _retryable if retry_on is Retry.TRANSIENT else _retryable_unsent
        return await retry(attempt, policy=policy or self._policy, is_retryable=predicate)

    async def _authenticated(self, send: Callable[[Mapping[str, str]], Awaitable[Any]]) -> Any:
        """Send with credentials. If 8x8 rejects a bearer token, get a new one and send once
        more: a 401 means 8x8 did not act on the request, so even a create may repeat."""
        headers = await _credentials(self._auth)
        try:
            return await send(headers)
        except UpstreamError as exc:
            if not await self._auth.rejected(exc, headers):
                raise
        return await send(await _credentials(self._auth))


async def _credentials(auth: Auth) -> dict[str, str]:
    """The auth headers. A transient failure to get them (token endpoint down) means the
    request itself was never sent, which makes even a create safe to retry."""
    try:
        return await auth.headers()
    except RequestNotSent:
        raise
    except RetryableUpstreamError as exc:
        raise RequestNotSent(
            str(exc), status=exc.status, code=exc.code, retry_after_s=exc.retry_after_s
        ) from None


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


def _may_have_acted(exc: RetryableUpstreamError) -> bool:
    """False when 8x8 surely did nothing: never reached, or refused with 429."""
    return not isinstance(exc, RequestNotSent) and exc.status != 429


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, RetryableUpstreamError)


def _retryable_unsent(exc: Exception) -> bool:
    return isinstance(exc, RequestNotSent) or (
        isinstance(exc, RetryableUpstreamError) and exc.status == 429
    )
