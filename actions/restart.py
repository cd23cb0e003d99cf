"""`/restart` during a handoff ends the 8x8 interaction too (Rasa's own restart would clear the
slots and leave the agent in a chat nobody reads). Rasa runs a custom action named
`action_restart` in place of its default one when the domain lists it. A session expiry does
not come here: a live handoff survives it (bridge-contract.md)."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, Restarted
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.outcomes import has_response
from bridge import host
from bridge.ids import SenderId


class ActionRestart(Action):
    """Ends the sender's live handoff (leaving the 8x8 interaction), then restarts as Rasa's
    default action does."""

    def name(self) -> str:
        return "action_restart"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        service = await host.service()
        await service.end(SenderId(tracker.sender_id))  # nothing to end: a no-op
        if has_response(domain, "utter_restart"):
            dispatcher.utter_message(response="utter_restart")
        return [Restarted()]
