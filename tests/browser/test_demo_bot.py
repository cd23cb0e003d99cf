"""The demo bot's parts on their own: NLU, the domain's responses and rules, routing, and the
choice between it and a real Rasa. (A stand-in for Rasa: nothing here claims compatibility.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from bridge.sandbox.bot_choice import choose_bot
from bridge.sandbox.demo_bot import DemoBot, load_domain
from bridge.sandbox.demo_bot.nlu import parse
from bridge.settings import Settings
from tests.support.rasa_stand_in import RasaStandIn

DOMAIN = load_domain()


@pytest.mark.parametrize(
    ("text", "intent", "confidence"),
    [
        ("hi", "greet", 0.95),
        ("Good morning!", "greet", 0.95),
        ("what are your opening hours?", "ask_hours", 0.95),
        ("I want to talk to a human", "human_handoff", 0.95),
        ("agent please", "human_handoff", 0.95),
        ("please end the chat", "end_handoff", 0.95),
        ("end chat with the agent", "end_handoff", 0.95),
        ("/end_handoff", "end_handoff", 1.0),
        ("/human_handoff", "human_handoff", 1.0),
        ("thanks!", "thank", 0.95),
        ("asdfgh", "nlu_fallback", 0.3),
        ("/no_such_intent", "nlu_fallback", 0.3),
        ("hint: ship it", "nlu_fallback", 0.3),  # keywords are whole words
    ],
)
def test_keywords_and_commands(text: str, intent: str, confidence: float) -> None:
    parsed = parse(text, DOMAIN.intents)
    assert parsed["intent"] == {"name": intent, "confidence": confidence}
    assert parsed["text"] == text


def test_a_command_carries_its_entities() -> None:
    parsed = parse('/human_handoff{"queue": "Support"}', DOMAIN.intents)
    assert parsed["intent"]["name"] == "human_handoff"
    assert parsed["entities"] == [{"entity": "queue", "value": "Support"}]


def test_responses_follow_the_slot_conditions_of_the_example_domain() -> None:
    assert DOMAIN.render("utter_handoff_agent_joined", {"handoff_agent": None}) == (
        "An agent has joined the chat."
    )
    assert DOMAIN.render("utter_handoff_agent_joined", {"handoff_agent": "Anna"}) == (
        "You're now chatting with Anna."
    )
    assert DOMAIN.render("utter_handoff_queued", {"handoff_queue": "Billing"}) == (
        "You're in the queue for Billing. The next available agent will be with you."
    )
    wait = {"handoff_queue_ahead": "0", "handoff_queue_wait": "2"}
    assert DOMAIN.render("utter_handoff_queue_wait", wait) == (
        "You're next in line; the wait is usually under 2 min."
    )
    wait = {"handoff_queue_ahead": "4", "handoff_queue_wait": "5"}
    assert DOMAIN.render("utter_handoff_queue_wait", wait) == (
        "There are about 4 people ahead of you; the wait is usually under 5 min."
    )
    assert DOMAIN.render("utter_no_such_response", {}) is None


def test_the_example_rules_are_read() -> None:
    assert DOMAIN.rules["human_handoff"] == "action_handoff_to_agent"
    assert DOMAIN.rules["nlu_fallback"] == "action_handoff_to_agent"
    assert DOMAIN.rules["EXTERNAL_agent_left"] == "action_handoff_notice"
    assert DOMAIN.rules["greet"] == "utter_greet"
    assert "EXTERNAL_handoff_failed" in DOMAIN.intents


def _bot_with(intent: str, handoff_active: bool) -> tuple[DemoBot, Any]:
    async def no_actions(call: dict[str, Any]) -> dict[str, Any] | None:
        raise AssertionError("not called")

    bot = DemoBot(DOMAIN, no_actions)
    tracker = bot.tracker("u1")
    tracker.slots["handoff_active"] = handoff_active
    tracker.user(intent, {"intent": {"name": intent, "confidence": 1.0}}, input_channel="callback")
    return bot, tracker


@pytest.mark.parametrize(
    ("intent", "handoff_active", "action"),
    [
        ("greet", False, "utter_greet"),
        ("greet", True, "action_handoff_forward"),  # whatever NLU says, during a handoff
        ("end_handoff", True, "action_handoff_forward"),  # the forward action ends it
        ("end_handoff", False, "utter_no_agent_chat"),
        ("nlu_fallback", True, "action_handoff_forward"),
        ("EXTERNAL_agent_left", True, "action_handoff_notice"),  # the bridge's own intents pass
        ("EXTERNAL_handoff_queued", False, "action_handoff_notice"),
        ("restart", True, "action_restart"),  # passes the policy; Rasa's built-in rule
    ],
)
def test_routing_is_the_handoff_policy_then_the_rules(
    intent: str, handoff_active: bool, action: str
) -> None:
    bot, tracker = _bot_with(intent, handoff_active)
    assert bot.predict(tracker) == action


async def test_responses_are_rendered_with_the_slots_before_the_actions_events() -> None:
    """As Rasa does: action_handoff_notice says "Anna has left" and then clears the slot."""
    calls: list[dict[str, Any]] = []

    async def action_server(call: dict[str, Any]) -> dict[str, Any] | None:
        calls.append(call)
        return {
            "events": [{"event": "slot", "name": "handoff_agent", "value": None}],
            "responses": [{"response": "utter_handoff_agent_left"}],
        }

    bot = DemoBot(DOMAIN, action_server)
    said: list[dict[str, Any]] = []

    async def output(sender: str, event: dict[str, Any]) -> None:
        said.append(event)

    await bot.handle_message("u2", "hi", output)
    await bot.trigger_intent("u2", "EXTERNAL_agent_left", {"agent": "Anna"}, output)
    assert [e["text"] for e in said][-1].startswith("Anna has left the chat.")
    assert bot.tracker("u2").slots["handoff_agent"] is None
    # Logged as Rasa logs an action: the action, its messages, its events, then listening.
    tail = [(e["event"], e.get("name")) for e in bot.tracker("u2").events[-4:]]
    assert tail == [
        ("action", "action_handoff_notice"), ("bot", None), ("slot", "handoff_agent"),
        ("action", "action_listen"),
    ]  # fmt: skip
    call = calls[-1]
    assert call["next_action"] == "action_handoff_notice" and call["sender_id"] == "u2"
    assert call["tracker"]["latest_message"]["intent"]["name"] == "EXTERNAL_agent_left"
    assert call["tracker"]["latest_input_channel"] == "callback"  # the trigger keeps `latest`
    assert call["tracker"]["slots"]["handoff_agent"] == "Anna"  # filled from the entity
    assert "responses" in call["domain"]


@pytest.fixture
async def fake_rasa() -> AsyncIterator[str]:
    server = TestServer(RasaStandIn().app(), host="127.0.0.1", port=0)
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_rasa_is_used_only_when_rasa_url_is_set_and_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_rasa: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("RASA_URL", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (await choose_bot(settings)).rasa_url is None  # the default URL is not probed

    monkeypatch.setenv("RASA_URL", fake_rasa + "/")
    choice = await choose_bot(settings)
    assert choice.rasa_url == fake_rasa and choice.rasa_version == "3.6.21"

    monkeypatch.setenv("RASA_URL", "http://127.0.0.1:9")  # nothing listens there
    choice = await choose_bot(settings)
    assert choice.rasa_url is None
    assert choice.reason is not None and "did not answer GET /version" in choice.reason

    monkeypatch.delenv("RASA_URL")
    (tmp_path / ".env").write_text(f"RASA_URL={fake_rasa}\n")
    assert (await choose_bot(settings)).rasa_url == fake_rasa  # `.env` counts, as for serve
