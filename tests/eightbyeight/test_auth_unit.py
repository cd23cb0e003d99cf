"""Credential pieces that need no server: token parsing and renewal times, static headers."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bridge.eightbyeight.auth import DEFAULT_LIFETIME_S, ApiKeyAuth, basic_auth, parse_token
from bridge.errors import PermanentUpstreamError, RetryableUpstreamError


@pytest.mark.parametrize(
    ("expires_in", "refresh_after"),
    [
        ("1799", 1799 - 60),  # the documented example: a string, renewed a minute early
        ("3600", 3600 - 60),
        (3600, 3600 - 60),  # a number is accepted too
        ("600", 600 - 60),
        ("300", 300 - 30),  # short token: 10% early
        ("10", 9),
        ("1.5", 1.35),
        ("", DEFAULT_LIFETIME_S * 0.9),  # unusable: a short default
        ("soon", DEFAULT_LIFETIME_S * 0.9),
        ("0", DEFAULT_LIFETIME_S * 0.9),
        ("-5", DEFAULT_LIFETIME_S * 0.9),
        (None, DEFAULT_LIFETIME_S * 0.9),
    ],
)
def test_token_renewal_time(expires_in: object, refresh_after: float) -> None:
    token = parse_token({"access_token": "abc", "expires_in": expires_in}, now=1000.0)
    assert token.value == "abc"
    assert token.refresh_at == pytest.approx(1000.0 + refresh_after)


@pytest.mark.parametrize("body", [None, [], {}, {"access_token": ""}, {"access_token": 5}, "token"])
def test_token_response_without_a_token_is_an_error(body: object) -> None:
    with pytest.raises(PermanentUpstreamError):
        parse_token(body, now=0.0)


async def test_api_key_headers_with_and_without_tenant() -> None:
    assert await ApiKeyAuth(SecretStr("k1")).headers() == {"x-api-key": "k1"}
    with_tenant = await ApiKeyAuth(SecretStr("k1"), "t1").headers()
    assert with_tenant == {"x-api-key": "k1", "X-8x8-Tenant": "t1"}


async def test_a_refused_api_key_is_never_worth_a_retry() -> None:
    auth = ApiKeyAuth(SecretStr("k1"))
    error = RetryableUpstreamError("x", status=401)
    assert await auth.rejected(error, {"x-api-key": "k1"}) is False


def test_secret_values_do_not_show_in_reprs() -> None:
    auth = ApiKeyAuth(SecretStr("very-secret-key"), "t1")
    assert "very-secret-key" not in repr(vars(auth))


def test_basic_auth_matches_the_documented_example() -> None:
    header = basic_auth(SecretStr("myclientId"), SecretStr("nevertellanyone"))
    assert header == "Basic bXljbGllbnRJZDpuZXZlcnRlbGxhbnlvbmU="
