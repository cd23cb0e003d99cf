"""SimulatorConfig: checks, and the demo set from_settings() makes up for what is unset."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.settings import Settings
from bridge.simulator import SimulatorConfig


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Settings from explicit values only: no environment, no .env file."""
    import os

    for name in list(os.environ):
        if name.upper().startswith(("EIGHTBYEIGHT_", "BRIDGE_")):
            monkeypatch.delenv(name)

    def make(**values: Any) -> Settings:
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


def test_unset_values_are_demo_values_the_same_on_every_start(settings: Any) -> None:
    one = SimulatorConfig.from_settings(settings())
    two = SimulatorConfig.from_settings(settings())
    assert one.demo_values_made_up
    assert set(one.made_up) == {
        "EIGHTBYEIGHT_API_KEY",
        "EIGHTBYEIGHT_API_SECRET",
        "EIGHTBYEIGHT_TENANT_ID",
        "EIGHTBYEIGHT_CHANNEL_ID",
    }
    assert (one.tenant_id, one.channel_id, one.queue_id) == ("demo-tenant", "demo-channel", "101")
    assert one.api_key.startswith("eght_")
    assert (one.api_key, one.api_secret) == (two.api_key, two.api_secret)
    assert one.webhook_url == "http://127.0.0.1:5055/8x8/events"
    assert one.api == "gateway"


def test_set_values_are_used(settings: Any) -> None:
    config = SimulatorConfig.from_settings(
        settings(
            eightbyeight_api="chat-v2",
            eightbyeight_api_key="key",
            eightbyeight_api_secret="secret",
            eightbyeight_tenant_id="acme",
            eightbyeight_channel_id="web",
            eightbyeight_queue_id="7",
            bridge_port=6000,
        ),
        webhook_url="http://elsewhere.test/hook",
    )
    assert not config.demo_values_made_up
    assert (config.api, config.api_key, config.api_secret) == ("chat-v2", "key", "secret")
    assert (config.tenant_id, config.customer_id, config.channel_id, config.queue_id) == (
        "acme",
        "acme",
        "web",
        "7",
    )
    assert config.webhook_url == "http://elsewhere.test/hook"


def test_partly_set_names_only_what_was_made_up(settings: Any) -> None:
    config = SimulatorConfig.from_settings(
        settings(eightbyeight_api_key="key", eightbyeight_channel_id="web", bridge_port=6001)
    )
    assert config.made_up == ("EIGHTBYEIGHT_TENANT_ID", "EIGHTBYEIGHT_API_SECRET")
    assert config.webhook_url == "http://127.0.0.1:6001/8x8/events"


@pytest.mark.parametrize(
    "changes",
    [
        {"api": "chat-v3"},
        {"api_key": ""},
        {"channel_id": ""},
        {"token_ttl_s": 0},
        {"delivery_retry_delays": (0.1, -1.0)},
        {"delivery_timeout_s": 0},
        {"fault_hang_s": 0},
    ],
)
def test_impossible_configs_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**changes)
