"""The demo bot's core: one turn at a time per conversation, routed like the example Rasa bot.

A turn is what Rasa's processor does for the example bot: log the user's message, extract
slots from entities (`from_entity` mappings), predict one action, run it, listen. Prediction
is `handoff_policy.HandoffPolicy` first (while `handoff_active` is true every user turn goes
to `action_handoff_forward`, except the bridge's `EXTERNAL_*` intents and restart /
session_start), then the example's rules. Custom actions run on the action server (the
bridge's `POST /webhook`, where rasa-sdk's `ActionExecutor` runs the real handoff actions),
with the call Rasa would send; their responses are rendered from the domain with the slots
as they were before the action's own events, as Rasa does.

Like Rasa, it holds a per-conversation lock for the whole turn, so a `trigger_intent` from
the bridge waits until the user's turn (and the action it runs) has finished.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.sandbox.demo_bot import nlu
from bridge.sandbox.demo_bot.domain import BotDomain
from bridge.sandbox.demo_bot.tracker import LISTEN, DemoTracker

log = logging.getLogger(__name__)

RASA_VERSION = "3.6.21"  # the Rasa whose action calls and HTTP answers the demo bot mimics
HANDOFF_SLOT = "handoff_active"
FORWARD_ACTION = "action_handoff_forward"
PASSTHROUGH_INTENTS = frozenset({"restart", "session_start"})
PASSTHROUGH_PREFIX = "EXTERNAL_"
DEFAULT_FALLBACK = "action_default_fallback"  # Rasa's: says utter_default
RESTART_ACTION = "action_restart"  # the example's own: ends a live handoff, then restarts

# Sends one `bot` event's message to the user's channel.
Output = Callable[[str, dict[str, Any]], Awaitable[None]]
# Runs a custom action: the action call in, the action server's answer out (None: it failed).
ActionCall = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class UnknownIntent(LookupError):
    """trigger_intent named an intent the domain does not have (Rasa answers 404)."""


class DemoBot:
    def __init__(self, domain: BotDomain, call_action: ActionCall) -> None:
        self.domain = domain
        self._call_action = call_action
        self._trackers: dict[str, DemoTracker] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def tracker(self, sender: str) -> DemoTracker:
        tracker = self._trackers.get(sender)
        if tracker is None:
            tracker = self._trackers[sender] = DemoTracker(sender, self.domain.initial_slots)
        return tracker

    async def handle_message(
        self,
        sender: str,
        text: str,
        output: Output,
        *,
        input_channel: str = "callback",
    ) -> None:
        """A user's message from a channel: one turn."""
        async with self._locks[sender]:
            tracker = self._started(sender)
            parse_data = nlu.parse(text, self.domain.intents)
            tracker.user(text, parse_data, input_channel=input_channel)
            await self._turn(tracker, output)

    async def trigger_intent(
        self, sender: str, intent: str, entities: dict[str, Any], output: Output
    ) -> None:
        """An external event (POST .../trigger_intent): a user turn with text
        `EXTERNAL: <intent>` on the conversation's latest input channel."""
        if intent not in self.domain.intents:
            raise UnknownIntent(intent)
        async with self._locks[sender]:
            tracker = self._started(sender)
            text = f"EXTERNAL: {intent}"
            parse_data = {
                "text": text,
                "intent": {"name": intent, "confidence": 1.0},
                "entities": [{"entity": k, "value": v} for k, v in entities.items()],
            }
            tracker.user(text, parse_data, input_channel=tracker.latest_input_channel)
            await self._turn(tracker, output)

    async def add_events(
        self, sender: str, events: list[dict[str, Any]], output: Output | None
    ) -> None:
        """POST .../tracker/events: append without predicting; with `output` (Rasa's
        execute_side_effects) the `bot` events also go to the user's channel."""
        async with self._locks[sender]:
            tracker = self._started(sender)
            for event in events:
                tracker.append(event)
                if output is not None and event.get("event") == "bot":
                    await output(sender, event)

    # --- one turn ---

    def _started(self, sender: str) -> DemoTracker:
        tracker = self.tracker(sender)
        if not tracker.events:
            tracker.start_session()
        return tracker

    async def _turn(self, tracker: DemoTracker, output: Output) -> None:
        tracker.append({"event": "action", "name": "action_extract_slots"})
        for event in self._slots_from_entities(tracker):
            tracker.append(event)
        await self._run(tracker, self.predict(tracker), output)
        tracker.append({"event": "action", "name": LISTEN})

    def predict(self, tracker: DemoTracker) -> str:
        """HandoffPolicy, then the example's rules, then Rasa's default fallback."""
        intent = tracker.intent
        passthrough = intent in PASSTHROUGH_INTENTS or intent.startswith(PASSTHROUGH_PREFIX)
        if tracker.slots.get(HANDOFF_SLOT) is True and not passthrough:
            return FORWARD_ACTION
        if intent == "restart":  # Rasa's built-in rule (the example overrides the action)
            return RESTART_ACTION
        return self.domain.rules.get(intent, DEFAULT_FALLBACK)

    def _slots_from_entities(self, tracker: DemoTracker) -> list[dict[str, Any]]:
        intent = tracker.intent
        found = {
            str(e.get("entity")): e.get("value")
            for e in tracker.latest_message.get("entities") or []
            if isinstance(e, dict)
        }
        return [
            {"event": "slot", "name": m.slot, "value": found[m.entity]}
            for m in self.domain.entity_slots
            if m.entity in found and (not m.intents or intent in m.intents)
        ]

    async def _run(self, tracker: DemoTracker, action: str, output: Output) -> None:
        bots: list[dict[str, Any]]
        events: list[dict[str, Any]] = []
        if action == DEFAULT_FALLBACK:
            bots = [self._utter("utter_default", tracker)]
        elif action.startswith("utter_"):
            bots = [self._utter(action, tracker)]
        else:
            bots, events = await self._custom(tracker, action)
        tracker.append({"event": "action", "name": action})
        for event in [*bots, *events]:
            tracker.append(event)
        for bot in bots:
            await output(tracker.sender_id, bot)

    def _utter(self, response: str, tracker: DemoTracker) -> dict[str, Any]:
        text = self.domain.render(response, tracker.slots)
        buttons = self.domain.buttons(response)
        data = {"buttons": buttons} if buttons else {}
        return {"event": "bot", "text": text, "data": data, "metadata": {"utter_action": response}}

    async def _custom(
        self, tracker: DemoTracker, action: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        call = {
            "next_action": action,
            "sender_id": tracker.sender_id,
            "version": RASA_VERSION,
            "tracker": tracker.state(),
            "domain": self.domain.raw,
        }
        result = await self._call_action(call)
        if result is None:
            # Rasa's words for it: "Bot will continue, but the actions events are lost".
            return [], []
        bots = []
        for response in result.get("responses") or []:
            name = response.get("response") or response.get("template")
            if name:
                bots.append(self._utter(str(name), tracker))
            elif response.get("text"):
                bots.append({"event": "bot", "text": response["text"], "data": {}, "metadata": {}})
        events = [e for e in result.get("events") or [] if isinstance(e, dict) and e.get("event")]
        return bots, events
