"""The error table: every documented 8x8 error shape to the right exception and code."""

from __future__ import annotations

import json
from email.utils import formatdate
from typing import Any

import pytest

from bridge.eightbyeight.errors import (
    MAX_MESSAGE_CHARS,
    TokenRejected,
    error_from_response,
    parse_retry_after,
)
from bridge.errors import (
    AuthError,
    NotFound,
    PermanentUpstreamError,
    RequestNotSent,
    RetryableUpstreamError,
    UpstreamError,
)

NOW = 1_700_000_000.0

APIGEE_401 = {
    "fault": {
        "faultstring": "Invalid Access Token",
        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
    }
}
GATEWAY_401 = {
    "message": "Access Denied",
    "errors": [{"message": "Access Denied", "code": "access_denied"}],
    "referenceId": "dacd0dd252723a2",
}
FORBIDDEN_403 = {
    "message": "The tenant does not belong to customer.",
    "errors": ["Tenant secretTenant does not belong to customer alice@example.com."],
}
NOT_FOUND_404 = {
    "message": "Resource of type Conversation with id c1 was not found.",
    "errors": ["Tenant t1 does not belong to customer c1."],
}
JWK_404 = {
    "type": "ClientError",
    "title": "Resource not found.",
    "status": 404,
    "detail": "Resource may not exist or is not accessible.",
    "resourceType": "JWKPublic",
    "resourceId": "EXaiWfZe20eSjklZ70074w",
    "instance": "ResourceNotFound",
}
BAD_REQUEST_OBJECT = {
    "message": "Invalid authorType=ghfgh, has to be one of user, bot, agent",
    "errors": {"code": "invalid_json_object", "message": "Invalid authorType=ghfgh"},
    "referenceId": "98e9da1f69f06d9019353ec66da6063a",
}
VALIDATION_400 = {
    "message": "Validation failed.",
    "errors": [{"code": "invalid_queue", "message": "Queue ID 112 is invalid."}],
    "validations": [{"field": "webHookId", "value": "45", "code": "invalid_queue"}],
}
CONSTRAINT_400 = {"message": "Constraint Violation", "errors": ["name: May not be empty."]}
TOKEN_400 = {"ErrorCode": "invalid_request", "Error": "Unsupported grant type : something"}
INTERNAL_500 = {
    "message": "Could not process this request due to an internal error",
    "errors": ["stack"],
    "referenceId": "r1",
}


def make(status: int, body: Any, headers: dict[str, str] | None = None) -> UpstreamError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return error_from_response("op", status, raw, headers or {}, now=lambda: NOW)


@pytest.mark.parametrize(
    ("status", "body", "cls", "code", "text"),
    [
        (401, APIGEE_401, TokenRejected, "keymanagement.service.invalid_access_token",
         "Invalid Access Token"),
        (401, GATEWAY_401, AuthError, "access_denied", "Access Denied"),
        (403, FORBIDDEN_403, AuthError, None, "The tenant does not belong to customer."),
        (404, NOT_FOUND_404, NotFound, None, "was not found"),
        (404, JWK_404, NotFound, "ResourceNotFound", "Resource not found."),
        (400, BAD_REQUEST_OBJECT, PermanentUpstreamError, "invalid_json_object",
         "Invalid authorType"),
        (400, VALIDATION_400, PermanentUpstreamError, "invalid_queue", "Validation failed."),
        (400, CONSTRAINT_400, PermanentUpstreamError, None, "Constraint Violation"),
        (400, TOKEN_400, PermanentUpstreamError, "invalid_request", "Unsupported grant type"),
        (409, {"message": "Conflict"}, PermanentUpstreamError, None, "Conflict"),
        (429, {"message": "Too many"}, RetryableUpstreamError, None, "Too many"),
        (500, INTERNAL_500, RetryableUpstreamError, None, "Could not process"),
        (502, b"<html>Bad gateway</html>", RetryableUpstreamError, None, "HTTP 502"),
        (503, b"", RetryableUpstreamError, None, "HTTP 503"),
        (418, b"not json {", PermanentUpstreamError, None, "HTTP 418"),
    ],
)  # fmt: skip
def test_error_table(
    status: int, body: Any, cls: type[UpstreamError], code: str | None, text: str
) -> None:
    error = make(status, body)
    assert type(error) is cls
    assert error.status == status
    assert error.code == code
    assert text in str(error)
    assert "op" in str(error)


def test_only_the_apigee_fault_401_counts_as_a_rejected_token() -> None:
    assert isinstance(make(401, APIGEE_401), TokenRejected)
    assert not isinstance(make(401, GATEWAY_401), TokenRejected)
    assert not isinstance(make(403, APIGEE_401), TokenRejected)


def test_error_details_that_echo_personal_data_are_left_out() -> None:
    error = make(403, FORBIDDEN_403)
    assert "alice@example.com" not in str(error)
    assert "secretTenant" not in str(error)


def test_long_messages_are_shortened() -> None:
    error = make(400, {"message": "x" * 5000})
    assert len(str(error)) < MAX_MESSAGE_CHARS + 40


def test_connection_level_classes_are_retryable() -> None:
    # RequestNotSent is what transport raises for a failed connect; the tree must make it
    # retryable everywhere and the only thing a create may retry on besides a 429.
    assert issubclass(RequestNotSent, RetryableUpstreamError)
    assert not issubclass(AuthError, RetryableUpstreamError)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),
        (formatdate(NOW + 30, usegmt=True), 30.0),
        (formatdate(NOW - 30, usegmt=True), 0.0),
        ("soon", None),
        ("nan", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, lambda: NOW) == expected


def test_429_carries_retry_after() -> None:
    error = make(429, b"", {"Retry-After": "3"})
    assert isinstance(error, RetryableUpstreamError)
    assert error.retry_after_s == 3.0
    dated = make(429, b"", {"Retry-After": formatdate(NOW + 4, usegmt=True)})
    assert dated.retry_after_s == 4.0


def test_retry_after_is_read_on_503_and_ignored_elsewhere() -> None:
    assert make(503, b"", {"Retry-After": "3"}).retry_after_s == 3.0
    assert make(500, b"", {"Retry-After": "3"}).retry_after_s is None
    assert make(400, b"", {"Retry-After": "3"}).retry_after_s is None
