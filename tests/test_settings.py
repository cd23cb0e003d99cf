"""Settings: the contract's variables and defaults, and `serve`'s refusal to start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.settings import load_settings

_ENV_PREFIXES = ("EIGHTBYEIGHT_", "REDIS_URL", "RASA_", "BRIDGE_", "HANDOFF_", "RELAY_", "EVENT_")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_match_the_contract() -> None:
    s = load_settings()
    assert s.eightbyeight_api == "gateway"
    assert s.eightbyeight_base_url == "https://api.8x8.com"
    assert s.eightbyeight_region == "us"
    assert s.eightbyeight_verify_signatures is True
    assert s.eightbyeight_max_clock_skew_s == 300
    assert s.redis_url is None
    assert s.rasa_url == "http://localhost:5005"
    assert s.rasa_output_channel == "latest"
    assert (s.bridge_host, s.bridge_port, s.bridge_max_body_bytes) == ("0.0.0.0", 5055, 262144)
    assert (s.handoff_fallbacks, s.handoff_end_threshold) == (2, None)
    assert s.customer_slots == ("name", "email")
    assert (s.relay_max_attempts, s.relay_max_age_s, s.event_dedupe_ttl_s) == (20, 3600, 86400)


def test_env_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("EIGHTBYEIGHT_API=chat-v2\nBRIDGE_PORT=6000\n")
    s = load_settings()
    assert (s.eightbyeight_api, s.bridge_port) == ("chat-v2", 6000)


def test_token_url_defaults_to_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIGHTBYEIGHT_BASE_URL", "http://localhost:8088/")
    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", "k")
    monkeypatch.setenv("EIGHTBYEIGHT_CHANNEL_ID", "c")
    config = load_settings().eightbyeight()
    assert config.token_url == "http://localhost:8088/oauth/v2/token"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({}, "EIGHTBYEIGHT_API_KEY"),
        ({"EIGHTBYEIGHT_API_KEY": "k"}, "EIGHTBYEIGHT_CHANNEL_ID"),
        ({"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_CHANNEL_ID": "c", "EIGHTBYEIGHT_API": "chat-v2"},
         "EIGHTBYEIGHT_API_SECRET"),
        ({"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_CHANNEL_ID": "c", "EIGHTBYEIGHT_API": "chat-v2",
          "EIGHTBYEIGHT_API_SECRET": "s"}, "EIGHTBYEIGHT_TENANT_ID"),
    ],
)  # fmt: skip
def test_missing_required_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], variable: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings().check_for_serve()
    assert info.value.variable == variable


def test_a_dedupe_ttl_shorter_than_the_signature_window_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_CHANNEL_ID": "c",
                 "EIGHTBYEIGHT_MAX_CLOCK_SKEW_S": "300", "EVENT_DEDUPE_TTL_S": "599", "BRIDGE_HOST": "127.0.0.1"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings().check_for_serve()
    assert info.value.variable == "EVENT_DEDUPE_TTL_S"
    monkeypatch.setenv("EVENT_DEDUPE_TTL_S", "600")
    load_settings().check_for_serve()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EIGHTBYEIGHT_API", "v3"),
        ("BRIDGE_PORT", "x"),
        ("HANDOFF_END_THRESHOLD", "2"),
        ("EIGHTBYEIGHT_REGION", "mars"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == name


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("localhost:5005", "absolute http or https"),
        ("http://rasa:99999", "not a valid URL"),
        ("http://bot:s3cret-pw@rasa:5005", "user or password"),
        ("http://rasa:5005/?token=s3cret-pw", "query or fragment"),
        ("http://rasa:5005/#x", "query or fragment"),
        ("http://rasa:5005?", "query or fragment"),
    ],
)
def test_a_rasa_url_a_request_would_drop_parts_of_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, url: str, says: str
) -> None:
    """Not every push failing later: a token in the query or credentials in the URL were
    silently left out of the pushes (`RASA_TOKEN` carries the token)."""
    monkeypatch.setenv("RASA_URL", url)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == "RASA_URL"
    assert says in str(info.value) and "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://localhost:5005", "https://bots.example.com/rasa/", "http://[::1]:5005"]
)
def test_a_rasa_url_with_a_path_prefix_is_accepted(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("RASA_URL", url)
    assert load_settings().rasa_url == url.rstrip("/")


def _serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_ENV_PREFIXES)}
    return subprocess.run(
        [sys.executable, "-m", "bridge", "serve"], env={**base, **env}, cwd=cwd,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_serve_refuses_to_start_with_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _serve({"EIGHTBYEIGHT_API_KEY": "super-secret-key"}, tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["handoff-bridge: configuration error: EIGHTBYEIGHT_CHANNEL_ID: is required"]


def test_serve_never_prints_a_secret_it_refuses(tmp_path: Path) -> None:
    result = _serve(
        {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_CHANNEL_ID": "c", "BRIDGE_PORT": "hunter2"},
        tmp_path,
    )
    assert result.returncode == 2
    assert "BRIDGE_PORT" in result.stderr and "hunter2" not in result.stderr


def test_secrets_are_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", "top-secret-key")
    monkeypatch.setenv("EIGHTBYEIGHT_API_SECRET", "top-secret-secret")
    monkeypatch.setenv("RASA_TOKEN", "top-secret-token")
    text = repr(load_settings()) + str(load_settings().model_dump())
    assert "top-secret" not in text


def test_names_and_queue_figures_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.handoff_agent_message_format == "{agent_name}: {text}"
    assert s.handoff_reopen_history == 20
    assert s.realtime() is None  # optional: no credentials, no figures, no Gateway names
    monkeypatch.setenv("EIGHTBYEIGHT_RTM_CLIENT_ID", "rid")
    monkeypatch.setenv("EIGHTBYEIGHT_RTM_CLIENT_SECRET", "rsecret")
    monkeypatch.setenv("EIGHTBYEIGHT_TENANT_ID", "t7")
    rtm = load_settings().realtime()
    assert rtm is not None
    assert rtm.base_url == "https://api.8x8.com/analytics/cc/v5/realtime-metrics"
    assert rtm.token_url == "https://api.8x8.com/oauth/v2/token"
    assert (rtm.client_id.get_secret_value(), rtm.tenant_id) == ("rid", "t7")
    monkeypatch.setenv(
        "EIGHTBYEIGHT_RTM_URL", "https://api.8x8.com/eu/analytics/cc/v5/realtime-metrics/"
    )
    rtm = load_settings().realtime()
    assert rtm is not None and rtm.base_url.endswith("/eu/analytics/cc/v5/realtime-metrics")


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HANDOFF_AGENT_MESSAGE_FORMAT", "{agent_name}", "must contain {text}"),
        ("HANDOFF_AGENT_MESSAGE_FORMAT", "{agent}: {text}", "not {agent}"),
        ("HANDOFF_REOPEN_HISTORY", "201", "less than or equal to 200"),
    ],
)
def test_bad_names_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == variable and problem in str(info.value)


def test_metrics_credentials_go_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EIGHTBYEIGHT_API_KEY", "k")
    monkeypatch.setenv("EIGHTBYEIGHT_CHANNEL_ID", "c")
    monkeypatch.setenv("EIGHTBYEIGHT_RTM_CLIENT_ID", "rid")
    with pytest.raises(ConfigError) as info:
        load_settings().check_for_serve()
    assert info.value.variable == "EIGHTBYEIGHT_RTM_CLIENT_SECRET"
