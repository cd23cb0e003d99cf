"""The sandbox from an installed package, away from a checkout: its demo bot falls back to the
handoff domain and rules shipped for add-to-bot."""

from __future__ import annotations

import pytest

from bridge.sandbox.demo_bot import domain as demo_domain


def test_without_a_checkout_the_demo_bot_knows_the_packaged_handoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo_domain, "example_root", lambda: None)
    bot = demo_domain.load_domain()
    assert bot.render("utter_handoff_connecting", {}) is not None
    assert bot.render("utter_handoff_agent_joined", {"handoff_agent": "Anna"}) == (
        "You're now chatting with Anna."
    )
    assert bot.rules["EXTERNAL_agent_joined"] == "action_handoff_notice"
    assert bot.rules["human_handoff"] == "action_handoff_to_agent"
    assert bot.initial_slots["handoff_active"] is False
