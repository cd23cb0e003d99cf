"""How a handoff ended, told to the bot when it takes over (slots `handoff_outcome` and
`handoff_last_agent`), so the bot owner's rules can follow up; and the example's survey."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

OUTCOME_SLOT = "handoff_outcome"
LAST_AGENT_SLOT = "handoff_last_agent"
AGENT_SLOT = "handoff_agent"  # the current agent's name, as the bridge's triggers give it
# Asked after an agent ended the chat, when the bot's domain has it (the example bot does).
SURVEY_RESPONSE = "utter_handoff_survey"


class HandoffOutcome(StrEnum):
    AGENT_ENDED = "agent_ended"  # the agent closed the chat
    USER_ENDED = "user_ended"  # the user ended it (/end_handoff)
    QUEUE_TIMEOUT = "queue_timeout"  # no agent joined within HANDOFF_QUEUE_TIMEOUT_S
    USER_SILENT = "user_silent"  # the user did not answer within HANDOFF_USER_SILENCE_S
    OUT_OF_HOURS = "out_of_hours"  # asked outside the opening hours: never escalated
    FAILED = "failed"  # the escalation could not be made


# The bridge's triggers that hand the conversation back to the bot, and what each means.
OUTCOME_OF_INTENT: dict[str, HandoffOutcome] = {
    "EXTERNAL_agent_left": HandoffOutcome.AGENT_ENDED,
    "EXTERNAL_handoff_queue_timeout": HandoffOutcome.QUEUE_TIMEOUT,
    "EXTERNAL_handoff_user_silent": HandoffOutcome.USER_SILENT,
    "EXTERNAL_handoff_failed": HandoffOutcome.FAILED,
}


def took_over(tracker: Tracker, outcome: HandoffOutcome) -> list[EventType]:
    """The slots the bot reads when it takes over: how it ended, and the agent's name (None
    when no agent joined, or 8x8 did not name them)."""
    agent = tracker.get_slot(AGENT_SLOT) if outcome is not HandoffOutcome.OUT_OF_HOURS else None
    return [SlotSet(OUTCOME_SLOT, outcome.value), SlotSet(LAST_AGENT_SLOT, agent)]


def handing_over() -> list[EventType]:
    """A new handoff begins: the last one's outcome no longer describes the conversation."""
    return [SlotSet(OUTCOME_SLOT, None), SlotSet(LAST_AGENT_SLOT, None)]


def has_response(domain: dict[str, Any] | None, name: str) -> bool:
    """Whether the bot's domain defines `name` (rasa-sdk passes None for a call without one)."""
    return name in ((domain or {}).get("responses") or {})


def offer_survey(
    dispatcher: CollectingDispatcher, domain: dict[str, Any] | None, outcome: HandoffOutcome
) -> None:
    """One question after an agent ended the chat; the user may ignore it and talk on."""
    if outcome is HandoffOutcome.AGENT_ENDED and has_response(domain, SURVEY_RESPONSE):
        dispatcher.utter_message(response=SURVEY_RESPONSE)
