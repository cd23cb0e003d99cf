"""BRIDGE_ACTION_TOKEN: the action routes and the metrics need it; `serve` refuses to listen
publicly without it (docs/security.md)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.errors import ConfigError
from bridge.settings import Settings, is_loopback
from tests.core.conftest import BridgeFactory
from tests.core.test_routes import _action_call
from tests.support.serve_proc import ServeProc, base_env

TOKEN = "tok-" + "a" * 28
NEXT = "tok-" + "b" * 28  # the one being rotated in
PROTECTED = [("POST", "/webhook"), ("GET", "/actions"), ("GET", "/metrics")]


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any] | str]:
    if method == "POST":
        kwargs.setdefault("json", _action_call("action_handoff_notice", "tok-user"))
    async with http.request(method, url, **kwargs) as r:
        body = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, body


@pytest.mark.parametrize("api", ["gateway"])
async def test_protected_routes_need_the_token(make_bridge: BridgeFactory) -> None:
    h = await make_bridge(bridge_action_token=f"{TOKEN}, {NEXT}")
    async with aiohttp.ClientSession() as http:
        for method, path in PROTECTED:
            url = f"{h.url}{path}"
            for refused in (
                {},
                {"params": {"token": "tok-" + "a" * 27 + "b"}},  # one character off
                {"params": {"token": TOKEN[:-1]}},  # a prefix
                {"headers": {"Authorization": f"Basic {TOKEN}"}},  # not a bearer token
                {"headers": {"Authorization": "Bearer "}},
            ):
                status, body = await _call(http, method, url, **refused)
                assert status == 401, (path, refused)
                assert body == {"result": "missing or invalid action token"}
            for accepted in (
                {"params": {"token": TOKEN}},  # what Rasa's endpoints.yml `token:` sends
                {"params": {"token": NEXT}},  # either token of a rotation
                {"headers": {"Authorization": f"Bearer {NEXT}"}},  # Prometheus
            ):
                status, _ = await _call(http, method, url, **accepted)
                assert status == 200, (path, accepted)
        # The other routes stay open: liveness probes and 8x8 carry no action token.
        for path in ("/health", "/ready"):
            assert (await _call(http, "GET", f"{h.url}{path}"))[0] == 200


@pytest.mark.parametrize("api", ["gateway"])
async def test_without_a_token_the_routes_stay_open_on_loopback(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    async with aiohttp.ClientSession() as http:
        for method, path in PROTECTED:
            assert (await _call(http, method, f"{h.url}{path}"))[0] == 200


async def test_forged_calls_against_a_real_serve(tmp_path: Path) -> None:
    """The attack of issue 8: rasa-sdk calls forged from the network, none run."""
    serve = ServeProc(base_env(BRIDGE_ACTION_TOKEN=TOKEN), tmp_path / "serve.log")
    await serve.start()
    try:
        async with aiohttp.ClientSession() as http:
            statuses = [(await _call(http, "POST", f"{serve.url}/webhook"))[0] for _ in range(20)]
            assert statuses == [401] * 20
            ok = await _call(http, "POST", f"{serve.url}/webhook", params={"token": TOKEN})
            assert ok[0] == 200
    finally:
        serve.stop()
    assert TOKEN not in serve.log_path.read_text()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
     ("10.0.0.5", False), ("bridge.example.com", False)],
)  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def _settings(**values: Any) -> Settings:
    base: dict[str, Any] = {"eightbyeight_api_key": "k", "eightbyeight_channel_id": "c"}
    return Settings(**{**base, **values})


def test_a_public_host_needs_the_token_and_signatures() -> None:
    _settings(bridge_host="127.0.0.1").check_for_serve()
    _settings(bridge_host="127.0.0.1", eightbyeight_verify_signatures=False).check_for_serve()
    _settings(bridge_host="0.0.0.0", bridge_action_token=TOKEN).check_for_serve()
    with pytest.raises(ConfigError) as info:
        _settings(bridge_host="0.0.0.0").check_for_serve()
    assert info.value.variable == "BRIDGE_ACTION_TOKEN"
    with pytest.raises(ConfigError) as info:
        _settings(bridge_host="0.0.0.0", bridge_action_token=" , ").check_for_serve()
    assert info.value.variable == "BRIDGE_ACTION_TOKEN"
    with pytest.raises(ConfigError) as info:
        _settings(
            bridge_host="0.0.0.0", bridge_action_token=TOKEN, eightbyeight_verify_signatures=False
        ).check_for_serve()
    assert info.value.variable == "EIGHTBYEIGHT_VERIFY_SIGNATURES"


def test_tokens_rotate_as_a_list_and_must_be_strong() -> None:
    assert _settings(bridge_action_token=f" {TOKEN} ,{NEXT},").action_tokens == (TOKEN, NEXT)
    assert _settings().action_tokens == ()
    with pytest.raises(ValueError, match="16 characters"):
        _settings(bridge_action_token=f"{TOKEN},change-me")


def _serve_exit(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "serve"], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        ({"BRIDGE_HOST": "0.0.0.0"},
         "BRIDGE_ACTION_TOKEN: is required when BRIDGE_HOST is not a loopback address"),
        ({"BRIDGE_HOST": "0.0.0.0", "BRIDGE_ACTION_TOKEN": TOKEN,
          "EIGHTBYEIGHT_VERIFY_SIGNATURES": "false"},
         "EIGHTBYEIGHT_VERIFY_SIGNATURES: must be true when BRIDGE_HOST is not a loopback address"),
        ({"BRIDGE_HOST": "0.0.0.0", "BRIDGE_ACTION_TOKEN": "short-secret-1"},
         "BRIDGE_ACTION_TOKEN: Value error, each token needs at least 16 characters"),
    ],
)  # fmt: skip
def test_serve_refuses_a_public_host_in_one_line(
    tmp_path: Path, extra: dict[str, str], line: str
) -> None:
    result = _serve_exit(base_env(**extra), tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"handoff-bridge: configuration error: {line}"]
    assert "short-secret-1" not in result.stderr and TOKEN not in result.stderr


@pytest.fixture
async def public_serve(tmp_path: Path) -> AsyncIterator[ServeProc]:
    # 0.0.0.0 with the token: starts (and is reached over loopback).
    serve = ServeProc(
        base_env(BRIDGE_HOST="0.0.0.0", BRIDGE_ACTION_TOKEN=TOKEN), tmp_path / "serve.log"
    )
    await serve.start()
    yield serve
    serve.stop()


async def test_serve_listens_publicly_with_the_token(public_serve: ServeProc) -> None:
    async with aiohttp.ClientSession() as http:
        assert (await _call(http, "GET", f"{public_serve.url}/metrics"))[0] == 401
        status, text = await _call(
            http, "GET", f"{public_serve.url}/metrics",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )  # fmt: skip
    assert status == 200 and "handoff_webhook_responses" in str(text)
