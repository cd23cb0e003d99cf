"""End to end, for both 8x8 APIs (harness: conftest.py): the handoff's timers, opening hours,
the outcome slots the bot reads when it takes over, the example's survey, and /restart ending
the 8x8 interaction, with the example bot on a real Rasa 3.6 and a real `serve`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import E2E
from tests.e2e.test_handoff_e2e import agent_name, agent_takes_over, escalate, user_talks_to_agent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CLOSED = Path(__file__).with_name("closed-hours.yml")


async def the_user_hears(e2e: E2E, sender: str, text: str, within: float = 20.0) -> None:
    """Wait until `text` reached the user (a timer in the serve process fires it)."""
    deadline = time.monotonic() + within
    while text not in e2e.inbox.texts(sender):
        assert time.monotonic() < deadline, f"the user never heard {text!r}"
        await asyncio.sleep(0.05)


async def outcome(e2e: E2E, sender: str) -> tuple[object, object]:
    slots = (await e2e.tracker(sender))["slots"]
    return slots.get("handoff_outcome"), slots.get("handoff_last_agent")


@pytest.mark.bridge_env(HANDOFF_QUEUE_TIMEOUT_S="6", HANDOFF_QUEUE_REMINDER_S="0")
async def test_no_agent_in_time_the_user_is_told_8x8_is_left_and_the_bot_answers(e2e: E2E) -> None:
    say = e2e.say_
    sender = e2e.new_sender()
    seen: list[str | None] = []
    await escalate(e2e, sender, "/human_handoff", seen)
    conv = e2e.conversation_of(sender)

    await the_user_hears(e2e, sender, say("utter_handoff_queue_timeout"))
    await e2e.settled()
    seen.append(say("utter_handoff_queue_timeout"))
    assert e2e.inbox.texts(sender) == seen  # once, and nothing after it
    assert await e2e.slot(sender, "handoff_active") is False
    assert await outcome(e2e, sender) == ("queue_timeout", None)
    assert e2e.sim.conversation(conv.id).interaction is None  # the user left the 8x8 queue

    # An agent who accepts too late reaches nobody; the bot answers the user itself.
    assert await e2e.say(sender, "hello") == [say("utter_greet")]


@pytest.mark.parametrize("api", ["gateway"])  # the check happens before any 8x8 call
@pytest.mark.bridge_env(HANDOFF_HOURS_FILE=str(CLOSED))
async def test_outside_the_opening_hours_the_bot_keeps_the_conversation(e2e: E2E) -> None:
    say = e2e.say_
    sender = e2e.new_sender()
    assert await e2e.say(sender, "I want to talk to a human") == [say("utter_handoff_out_of_hours")]
    assert await e2e.slot(sender, "handoff_active") is False
    assert await outcome(e2e, sender) == ("out_of_hours", None)
    assert e2e.sim.conversations == {}  # 8x8 never asked
    assert await e2e.say(sender, "what are your hours") == [say("utter_hours")]


async def test_the_agent_ends_the_bot_knows_who_and_asks_one_question(e2e: E2E) -> None:
    say = e2e.say_
    sender = e2e.new_sender()
    seen: list[str | None] = []
    conv = await agent_takes_over(e2e, sender, seen, agent="Anna")
    await e2e.sim.desk.leave(conv.id)
    await e2e.settled()
    seen += [
        say("utter_handoff_agent_left", handoff_agent=agent_name(e2e, "Anna")),
        say("utter_handoff_survey"),
    ]
    assert e2e.inbox.texts(sender) == seen
    buttons = e2e.inbox.messages(sender)[-1].get("buttons") or []
    assert [b["payload"] for b in buttons] == ["/handoff_survey_good", "/handoff_survey_bad"]
    assert await outcome(e2e, sender) == ("agent_ended", agent_name(e2e, "Anna"))

    # The user answers with a button...
    assert await e2e.say(sender, "/handoff_survey_good") == [say("utter_handoff_survey_good")]
    # ... or would just talk to the bot: it answers as usual.
    assert await e2e.say(sender, "what are your hours") == [say("utter_hours")]

    # A new handoff clears the outcome; the user ending it is an outcome too.
    seen = e2e.inbox.texts(sender)
    await escalate(e2e, sender, "agent please", seen)
    assert await outcome(e2e, sender) == (None, None)
    assert await e2e.say(sender, "/end_handoff") == [say("utter_handoff_ended")]
    assert await outcome(e2e, sender) == ("user_ended", None)


async def test_restart_during_a_handoff_ends_the_8x8_interaction(e2e: E2E) -> None:
    sender = e2e.new_sender()
    seen: list[str | None] = []
    conv = await agent_takes_over(e2e, sender, seen)
    await user_talks_to_agent(e2e, sender, conv.id, "hi there")
    await e2e.say(sender, "/restart")
    live = e2e.sim.conversation(conv.id)
    assert live.interaction is None and live.user_present is False
    assert "/restart" not in [m.text for m in live.messages]
    assert await e2e.slot(sender, "handoff_active") is False
    await e2e.settled()
    assert await e2e.say(sender, "hello") == [e2e.say_("utter_greet")]
