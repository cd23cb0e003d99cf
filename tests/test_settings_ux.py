"""Issue 12's settings: the timers' defaults and their conversion, and the opening-hours file
checked when the settings are read (so `serve` refuses a bad one with exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.handoff import Timing
from bridge.settings import load_settings
from tests.test_settings import _serve

_ENV_PREFIXES = ("HANDOFF_",)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_the_timers_defaults_in_milliseconds_for_the_state_machine() -> None:
    s = load_settings()
    assert s.handoff_timing() == Timing(
        queue_timeout_ms=600_000,
        queue_reminder_ms=120_000,
        agent_silence_ms=300_000,
        user_silence_ms=900_000,
    )
    assert s.opening_hours() is None


def test_zero_turns_a_timer_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANDOFF_QUEUE_TIMEOUT_S", "0")
    assert load_settings().handoff_timing().queue_timeout_ms == 0
    monkeypatch.setenv("HANDOFF_USER_SILENCE_S", "-1")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == "HANDOFF_USER_SILENCE_S"


def test_the_opening_hours_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "hours.yml"
    path.write_text("timezone: UTC\nweekly:\n  mon: '00:00-24:00'\n")
    monkeypatch.setenv("HANDOFF_HOURS_FILE", str(path))
    hours = load_settings().opening_hours()
    assert hours is not None and hours.is_open(1_767_571_200)  # 2026-01-05, a Monday


@pytest.mark.parametrize(
    "content", [None, "timezone: Nowhere/Special\n", "timezone: UTC\nweekly:\n  mon: 9-5\n"]
)
def test_a_bad_opening_hours_file_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "hours.yml"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("HANDOFF_HOURS_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == "HANDOFF_HOURS_FILE"


def test_serve_refuses_a_bad_opening_hours_file(tmp_path: Path) -> None:
    env = {"EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_CHANNEL_ID": "c",
           "HANDOFF_HOURS_FILE": str(tmp_path / "missing.yml")}  # fmt: skip
    result = _serve(env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("handoff-bridge: configuration error: HANDOFF_HOURS_FILE")
