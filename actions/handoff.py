"""The handoff actions. Thin: read the tracker, call the handoff service, say the domain's
response, return events. They never call Rasa's HTTP API (Rasa holds the conversation's lock
while an action runs: that would deadlock, rasa-integration.md §2)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.outcomes import (
    OUTCOME_OF_INTENT,
    HandoffOutcome,
    handing_over,
    offer_survey,
    took_over,
)
from actions.tracker_data import customer, fallback_streak, since_last_handoff, transcript
from bridge import host
from bridge.ids import SenderId
from bridge.service import Outcome

log = logging.getLogger(__name__)

SLOT = "handoff_active"
AGENT_SLOT = "handoff_agent"  # filled by Rasa from the triggers' `agent` entity
QUEUE_SLOT = "handoff_queue"  # ... and `queue` entity
# ... and the queue's figures (Real-time Metrics API), `queue_ahead` and `queue_wait`
WAIT_SLOTS = ("handoff_queue_ahead", "handoff_queue_wait")
WAIT_ENTITIES = ("queue_ahead", "queue_wait")
# The triggers that may carry those figures: utter_handoff_queue_wait follows their notice.
WAIT_NOTICES = ("EXTERNAL_handoff_queued", "EXTERNAL_handoff_queue_reminder")
ESCALATION_INTENT = "human_handoff"
# Sent (as the user's) to reopen a conversation when the user's request was a command only.
REOPEN_TEXT = "The customer asked for an agent again."
END_INTENT = "end_handoff"

# What action_handoff_notice says for each of the bridge's triggers, and the slot value after.
NOTICES: dict[str, tuple[str, bool]] = {
    "EXTERNAL_handoff_queued": ("utter_handoff_queued", True),
    "EXTERNAL_agent_joined": ("utter_handoff_agent_joined", True),
    "EXTERNAL_agent_left": ("utter_handoff_agent_left", False),
    "EXTERNAL_handoff_failed": ("utter_handoff_failed", False),
    "EXTERNAL_handoff_queue_reminder": ("utter_handoff_queue_reminder", True),
    "EXTERNAL_handoff_agent_silent": ("utter_handoff_agent_silent", True),
    "EXTERNAL_handoff_queue_timeout": ("utter_handoff_queue_timeout", False),
    "EXTERNAL_handoff_user_silent": ("utter_handoff_user_silent", False),
}


def _intent(tracker: Tracker) -> tuple[str | None, float]:
    # Not get_intent_of_latest_message(): it reads intent_ranking, which some classifiers
    # do not produce (rasa-integration.md §1.1).
    intent = (tracker.latest_message or {}).get("intent") or {}
    return intent.get("name"), float(intent.get("confidence") or 0.0)


def _rule(path: str) -> Callable[[Tracker], bool]:
    """The bot owner's HANDOFF_RULE callable, `package.module.function` or `package.module:function`."""
    module, _, name = path.replace(":", ".").rpartition(".")
    rule: Callable[[Tracker], bool] = getattr(importlib.import_module(module), name)
    return rule


def _rule_says_escalate(tracker: Tracker) -> bool:
    path = host.settings().handoff_rule
    if not path:
        return False
    try:  # a broken or mistyped rule is logged; the conversation goes on without it
        return bool(_rule(path)(tracker))
    except Exception:  # a broken business rule must not break the conversation
        log.exception("handoff_rule_failed", extra={"sender": tracker.sender_id})
        return False


def escalation_trigger(tracker: Tracker) -> str | None:
    """Why to escalate now, or None: `asked` (human_handoff, always), `rule` (the bot owner's
    HANDOFF_RULE says so), `fallbacks` (HANDOFF_FALLBACKS fallbacks in a row)."""
    intent, _ = _intent(tracker)
    if intent == ESCALATION_INTENT:
        return "asked"
    if _rule_says_escalate(tracker):
        return "rule"
    needed = host.settings().handoff_fallbacks
    if needed > 0 and fallback_streak(tracker.events, ESCALATION_INTENT) >= needed:
        return "fallbacks"
    return None


def should_escalate(tracker: Tracker) -> bool:
    return escalation_trigger(tracker) is not None


class ActionHandoffToAgent(Action):
    """Escalate: open the sender's 8x8 conversation, or reopen the one they had."""

    def name(self) -> str:
        return "action_handoff_to_agent"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if tracker.get_slot(SLOT):
            return []  # already with an agent (or queued): nothing to open
        trigger = escalation_trigger(tracker)
        if trigger is None:
            dispatcher.utter_message(response="utter_default")
            return []
        settings = host.settings()
        metadata = (tracker.latest_message or {}).get("metadata") or {}
        session_metadata = tracker.get_slot("session_started_metadata") or {}
        data = customer(
            tracker.sender_id,
            tracker.slots,
            {**session_metadata, **metadata},
            settings.customer_slots,
        )
        service = await host.service()
        # The escalation command itself ("/human_handoff") is never customer text: transcript()
        # leaves commands out. On reopen, the turns since the last handoff go first, so the
        # agent sees the whole story; the neutral line reopens when the user said nothing else.
        recent = transcript(since_last_handoff(tracker.events, SLOT))
        result = await service.escalate(
            SenderId(tracker.sender_id),
            data,
            transcript(tracker.events),
            reopen_text=REOPEN_TEXT,
            reopen_history=recent[-settings.handoff_reopen_history :]
            if settings.handoff_reopen_history
            else [],
            trigger=trigger,
        )
        if result.outcome is Outcome.OUT_OF_HOURS:
            dispatcher.utter_message(response="utter_handoff_out_of_hours")
            return [SlotSet(SLOT, False), *took_over(tracker, HandoffOutcome.OUT_OF_HOURS)]
        if result.outcome is Outcome.FAILED:
            dispatcher.utter_message(response="utter_handoff_failed")
            return [SlotSet(SLOT, False), *took_over(tracker, HandoffOutcome.FAILED)]
        dispatcher.utter_message(response="utter_handoff_connecting")
        # A new handoff: forget the last one's agent and queue (responses name them), and drop
        # any active form (an active loop's prediction would outrank the routing policy).
        return [
            SlotSet(SLOT, True),
            SlotSet(AGENT_SLOT, None),
            SlotSet(QUEUE_SLOT, None),
            *handing_over(),
            *(SlotSet(slot, None) for slot in WAIT_SLOTS),
            ActiveLoop(None),
        ]


def is_end_request(tracker: Tracker, threshold: float | None) -> bool:
    """An explicit `/end_handoff` (typed or a button payload); with a `threshold`
    (HANDOFF_END_THRESHOLD), also NLU at least that sure of end_handoff. Without one, NLU never
    ends a chat: small bots' classifiers are sure of end_handoff for "stop" or "close my
    account", words meant for the agent."""
    text = str((tracker.latest_message or {}).get("text") or "").strip()
    explicit = text == f"/{END_INTENT}" or text.startswith(f"/{END_INTENT}{{")
    if explicit or threshold is None:
        return explicit
    intent, confidence = _intent(tracker)
    return intent == END_INTENT and confidence >= threshold


async def _end(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
    service = await host.service()
    await service.end(SenderId(tracker.sender_id))
    dispatcher.utter_message(response="utter_handoff_ended")
    return [SlotSet(SLOT, False), *took_over(tracker, HandoffOutcome.USER_ENDED)]


class ActionHandoffForward(Action):
    """During a handoff, the user's turn goes to the agent; the bot says nothing of its own."""

    def name(self) -> str:
        return "action_handoff_forward"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        if is_end_request(tracker, host.settings().handoff_end_threshold):
            return await _end(dispatcher, tracker)
        text = str((tracker.latest_message or {}).get("text") or "")
        if not text.strip():
            return []
        service = await host.service()
        result = await service.forward(SenderId(tracker.sender_id), text)
        return _after_forward(result.outcome, dispatcher)


def _after_forward(outcome: Outcome, dispatcher: CollectingDispatcher) -> list[EventType]:
    if outcome is Outcome.DELAYED:
        dispatcher.utter_message(response="utter_handoff_delayed")
    elif outcome in (Outcome.NO_HANDOFF, Outcome.ENDED):
        # The slot said "with an agent" but the bridge has no live handoff (it ended meanwhile,
        # or 8x8 lost the conversation): tell the user, and let the bot answer again.
        dispatcher.utter_message(response="utter_handoff_ended")
        return [SlotSet(SLOT, False)]
    elif outcome is Outcome.FAILED:
        dispatcher.utter_message(response="utter_handoff_failed")
        return [SlotSet(SLOT, False)]
    elif outcome is Outcome.REJECTED:
        dispatcher.utter_message(response="utter_handoff_failed")  # this message; the chat goes on
    return []


class ActionHandoffEnd(Action):
    """The user ends the chat with the agent; back to the bot."""

    def name(self) -> str:
        return "action_handoff_end"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        return await _end(dispatcher, tracker)


class ActionHandoffNotice(Action):
    """Reacts to the bridge's EXTERNAL_* intents: says the matching response, keeps the slot."""

    def name(self) -> str:
        return "action_handoff_notice"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        intent, _ = _intent(tracker)
        notice = NOTICES.get(intent or "")
        if notice is None:
            return []
        response, active = notice
        dispatcher.utter_message(response=response)  # rendered with the slots as they are now
        if intent in WAIT_NOTICES:
            return [SlotSet(SLOT, True), *_queue_wait(dispatcher, tracker)]
        if active:
            return [SlotSet(SLOT, True)]
        outcome = OUTCOME_OF_INTENT.get(intent or "", HandoffOutcome.FAILED)
        offer_survey(dispatcher, domain, outcome)
        return [
            SlotSet(SLOT, False),
            *took_over(tracker, outcome),
            SlotSet(AGENT_SLOT, None),
            SlotSet(QUEUE_SLOT, None),
            *(SlotSet(slot, None) for slot in WAIT_SLOTS),
        ]


def _queue_wait(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
    """The queue's figures, said when this trigger carries them; figures an earlier wait left in
    the slots are cleared otherwise, so they are never said for this one."""
    entities = {e.get("entity") for e in (tracker.latest_message or {}).get("entities") or []}
    if all(name in entities for name in WAIT_ENTITIES):
        dispatcher.utter_message(response="utter_handoff_queue_wait")
        return []
    return [SlotSet(slot, None) for slot in WAIT_SLOTS]
