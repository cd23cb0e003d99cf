"""Issue 12 in the actions: opening hours before escalating, the outcome slots when the bot
takes over, the survey after an agent ends, the timers' notices, and /restart ending the 8x8
interaction. rasa-sdk's Tracker and dispatcher, the simulator as 8x8, real Redis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import ActionHandoffEnd, ActionHandoffNotice, ActionHandoffToAgent
from actions.restart import ActionRestart
from bridge.hours import parse_hours
from bridge.ids import SenderId
from tests.actions.conftest import World, tracker

ESCALATE = ActionHandoffToAgent()
END = ActionHandoffEnd()
NOTICE = ActionHandoffNotice()
RESTART = ActionRestart()
SURVEY_DOMAIN: dict[str, Any] = {"responses": {"utter_handoff_survey": [{"text": "How was it?"}]}}
# Open Monday to Friday, 9 to 5, in London.
HOURS = parse_hours({"timezone": "Europe/London", "weekly": {
    d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}})  # fmt: skip
MONDAY_NOON = datetime(2026, 1, 5, 12, 0, tzinfo=UTC).timestamp()
SUNDAY_NOON = datetime(2026, 1, 4, 12, 0, tzinfo=UTC).timestamp()


async def run(
    action: Action, t: Tracker, domain: dict[str, Any] | None = None
) -> tuple[list[str | None], dict[str, Any]]:
    """What the action said, and the slots it set (the last value of each)."""
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, t, domain or {})
    slots = {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
    if any(e.get("event") == "restart" for e in events):
        slots["<restarted>"] = True
    return [m.get("response") for m in dispatcher.messages], slots


def with_hours(w: World, now: float) -> None:
    w.service.hours = HOURS
    w.service._clock = lambda: now


async def test_outside_the_opening_hours_the_bot_keeps_the_conversation(w: World) -> None:
    with_hours(w, SUNDAY_NOON)
    said, slots = await run(ESCALATE, tracker("olga", "/human_handoff", "human_handoff"))
    assert said == ["utter_handoff_out_of_hours"]
    assert slots == {
        "handoff_active": False,
        "handoff_outcome": "out_of_hours",
        "handoff_last_agent": None,
    }
    assert w.sim.conversations == {}  # 8x8 was never asked


async def test_within_the_opening_hours_the_escalation_goes_ahead(w: World) -> None:
    with_hours(w, MONDAY_NOON)
    said, slots = await run(ESCALATE, tracker("opal", "/human_handoff", "human_handoff",
                                              slots={"handoff_outcome": "agent_ended"}))  # fmt: skip
    assert said == ["utter_handoff_connecting"]
    assert slots["handoff_active"] is True
    assert slots["handoff_outcome"] is None  # a new handoff: the last outcome is cleared
    assert len(w.sim.conversations) == 1


def during(sender: str, intent: str, agent: str | None = "Anna") -> Tracker:
    t = tracker(sender, f"EXTERNAL: {intent}", intent, slots={"handoff_agent": agent})
    t.slots["handoff_active"] = True
    return t


@pytest.mark.parametrize(
    ("intent", "response", "outcome", "last_agent"),
    [
        ("EXTERNAL_agent_left", "utter_handoff_agent_left", "agent_ended", "Anna"),
        ("EXTERNAL_handoff_queue_timeout", "utter_handoff_queue_timeout", "queue_timeout", None),
        ("EXTERNAL_handoff_user_silent", "utter_handoff_user_silent", "user_silent", "Anna"),
        ("EXTERNAL_handoff_failed", "utter_handoff_failed", "failed", None),
    ],
)
async def test_the_bot_takes_over_knowing_how_the_handoff_ended(
    w: World, intent: str, response: str, outcome: str, last_agent: str | None
) -> None:
    agent = last_agent if outcome != "failed" else None
    said, slots = await run(NOTICE, during("nia", intent, agent=agent if agent else None))
    assert said[0] == response
    assert slots["handoff_active"] is False
    assert (slots["handoff_outcome"], slots["handoff_last_agent"]) == (outcome, last_agent)
    assert slots["handoff_agent"] is None  # the current agent's slot is cleared


NO_FIGURES = {"handoff_queue_ahead": None, "handoff_queue_wait": None}  # none on this trigger


@pytest.mark.parametrize(
    ("intent", "response", "cleared"),
    [
        ("EXTERNAL_handoff_queue_reminder", "utter_handoff_queue_reminder", NO_FIGURES),
        ("EXTERNAL_handoff_agent_silent", "utter_handoff_agent_silent", {}),
    ],
)
async def test_the_waiting_notices_keep_the_handoff(
    w: World, intent: str, response: str, cleared: dict[str, None]
) -> None:
    said, slots = await run(NOTICE, during("noa", intent))
    assert said == [response] and slots == {"handoff_active": True, **cleared}


async def test_the_survey_follows_only_an_agents_end_and_only_if_the_bot_has_it(w: World) -> None:
    said, _ = await run(NOTICE, during("sue", "EXTERNAL_agent_left"), SURVEY_DOMAIN)
    assert said == ["utter_handoff_agent_left", "utter_handoff_survey"]
    said, _ = await run(NOTICE, during("sue", "EXTERNAL_agent_left"), {"responses": {}})
    assert said == ["utter_handoff_agent_left"]
    dispatcher = CollectingDispatcher()  # rasa-sdk passes no domain for a call without one
    await NOTICE.run(dispatcher, during("sue", "EXTERNAL_agent_left"), None)  # type: ignore[arg-type]
    assert [m["response"] for m in dispatcher.messages] == ["utter_handoff_agent_left"]
    said, _ = await run(NOTICE, during("sue", "EXTERNAL_handoff_queue_timeout"), SURVEY_DOMAIN)
    assert said == ["utter_handoff_queue_timeout"]


async def test_the_user_ending_the_chat_is_an_outcome_too(w: World) -> None:
    await run(ESCALATE, tracker("uma", "/human_handoff", "human_handoff"))
    t = tracker("uma", "/end_handoff", "end_handoff", slots={"handoff_agent": "Bo"})
    t.slots["handoff_active"] = True
    said, slots = await run(END, t)
    assert said == ["utter_handoff_ended"]
    assert (slots["handoff_outcome"], slots["handoff_last_agent"]) == ("user_ended", "Bo")


async def test_restart_during_a_handoff_ends_the_8x8_interaction(w: World) -> None:
    await run(ESCALATE, tracker("rex", "/human_handoff", "human_handoff"))
    cid = (await w.service.handoff(SenderId("rex"))).conversation_id
    assert cid is not None
    await w.sim.desk.accept(cid, agent_name="Anna")
    assert w.sim.conversations[cid].interaction is not None
    said, slots = await run(RESTART, tracker("rex", "/restart", "restart"))
    assert slots == {"<restarted>": True} and said == []
    assert w.sim.conversations[cid].interaction is None  # the customer left the interaction
    assert not (await w.service.handoff(SenderId("rex"))).active


async def test_restart_without_a_handoff_only_restarts(w: World) -> None:
    said, slots = await run(
        RESTART,
        tracker("roy", "/restart", "restart"),
        {"responses": {"utter_restart": [{"text": "Restarted."}]}},
    )
    assert said == ["utter_restart"] and slots == {"<restarted>": True}
    assert w.sim.requests == []
