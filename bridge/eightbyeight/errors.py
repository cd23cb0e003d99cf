"""Turn an 8x8 HTTP error response into the bridge's exception tree (spec §1, §2.2, §4.2).

8x8 answers errors in several shapes: problem+json `{message, errors}` (where `errors` is a
list of strings, a list of `{code, message}` objects, or one such object), the OAuth
`{ErrorCode, Error}`, the Apigee `{"fault": ...}` of its API gateway, and the JWK endpoint's
own RFC 7807-like 404. We keep only the status, one machine-readable code and 8x8's short
top-level message: the `errors` details can echo request data (names, e-mail addresses), so
they never reach an exception, a log or a metric.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from bridge.errors import (
    AuthError,
    NotFound,
    PermanentUpstreamError,
    RetryableUpstreamError,
    UpstreamError,
)

MAX_MESSAGE_CHARS = 160
# Statuses whose Retry-After we honour (RFC 9110 defines it for both).
RETRY_AFTER_STATUSES = frozenset({429, 503})


class TokenRejected(AuthError):
    """A 401 with the Apigee `fault` body: the bearer token is invalid or expired (spec §1.1).
    The chat-v2 client fetches a new token once and repeats the call."""


# Status -> exception class; other 4xx are permanent, 5xx retryable (see `_class_for`).
_STATUS_CLASSES: dict[int, type[UpstreamError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFound,
    429: RetryableUpstreamError,
}


def error_from_response(
    operation: str,
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: Callable[[], float] = time.time,
) -> UpstreamError:
    """The exception for an error response of `operation` (a short name such as
    "send_message"), carrying `status`, a `code` when 8x8 gave one, and `retry_after_s`
    for a 429 or 503 with a usable Retry-After header."""
    code, detail = _describe(_parse_json(body))
    cls = _class_for(status)
    if status == 401 and _is_fault(body):
        cls = TokenRejected
    message = f"8x8 {operation}: HTTP {status}"
    if code:
        message += f" [{code}]"
    if detail:
        message += f": {detail}"
    retry_after = (
        parse_retry_after(headers.get("Retry-After"), now)
        if status in RETRY_AFTER_STATUSES
        else None
    )
    return cls(message, status=status, code=code, retry_after_s=retry_after)


def _class_for(status: int) -> type[UpstreamError]:
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status >= 500:
        return RetryableUpstreamError
    return PermanentUpstreamError


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110).
    None when absent or unreadable; a date in the past means "now" (0)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - now()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        return None  # an HTML error page from a proxy, say: the status alone must do


def _is_fault(body: bytes) -> bool:
    parsed = _parse_json(body)
    return isinstance(parsed, dict) and isinstance(parsed.get("fault"), dict)


def _describe(body: Any) -> tuple[str | None, str | None]:
    """(code, short message) from any of 8x8's error shapes; (None, None) if unrecognised."""
    if not isinstance(body, dict):
        return None, None
    if isinstance(body.get("fault"), dict):
        fault = body["fault"]
        detail = fault.get("detail")
        code = detail.get("errorcode") if isinstance(detail, dict) else None
        return _text(code), _short(fault.get("faultstring"))
    if "ErrorCode" in body:  # the OAuth token endpoint
        return _text(body.get("ErrorCode")), _short(body.get("Error"))
    if "message" in body or "errors" in body:
        return _first_code(body.get("errors")), _short(body.get("message"))
    if "title" in body:  # the JWK endpoint's 404
        return _text(body.get("instance") or body.get("type")), _short(body.get("title"))
    return None, None


def _first_code(errors: Any) -> str | None:
    """The `code` of the first error object; a list of plain strings has none."""
    if isinstance(errors, dict):
        return _text(errors.get("code"))
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, dict) and item.get("code"):
                return _text(item["code"])
    return None


def _text(value: Any) -> str | None:
    return _short(value) if isinstance(value, str | int) and str(value) else None


def _short(value: Any) -> str | None:
    if not isinstance(value, str | int) or not str(value).strip():
        return None
    text = " ".join(str(value).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"
