"""One conversation's tracker, kept as Rasa keeps it: a list of events, and the state they
imply (slots, latest message, latest action, latest input channel).

The events have Rasa's JSON shapes (rasa-integration.md §1.4), because the real handoff
actions read them: the transcript for the agent, the fallback streak.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

LISTEN = "action_listen"


class DemoTracker:
    def __init__(self, sender_id: str, initial_slots: dict[str, Any]) -> None:
        self.sender_id = sender_id
        self.events: list[dict[str, Any]] = []
        self._initial_slots = dict(initial_slots)
        self.slots: dict[str, Any] = dict(initial_slots)
        self.latest_message: dict[str, Any] = {}
        self.latest_action_name: str | None = None
        self.latest_input_channel: str | None = None

    def append(self, event: dict[str, Any]) -> None:
        """Record an event and apply it to the state, as Rasa's tracker does."""
        event = {**event, "timestamp": event.get("timestamp") or time.time()}
        self.events.append(event)
        kind = event.get("event")
        if kind == "user":
            self.latest_message = {
                **(event.get("parse_data") or {}),
                "text": event.get("text"),
                "message_id": event.get("message_id"),
                "metadata": event.get("metadata") or {},
            }
            self.latest_input_channel = event.get("input_channel") or self.latest_input_channel
        elif kind == "action":
            self.latest_action_name = event.get("name")
        elif kind == "slot" and isinstance(event.get("name"), str):
            self.slots[event["name"]] = event.get("value")
        elif kind == "restart":  # Rasa forgets the conversation's state (the events stay)
            self.slots = dict(self._initial_slots)

    def start_session(self) -> None:
        """What Rasa logs before a new conversation's first turn (its channel gave no
        metadata, so there is no `session_started_metadata` slot)."""
        self.append({"event": "action", "name": "action_session_start"})
        self.append({"event": "session_started"})
        self.append({"event": "action", "name": LISTEN})

    def user(
        self,
        text: str,
        parse_data: dict[str, Any],
        *,
        input_channel: str | None,
    ) -> None:
        self.append(
            {
                "event": "user",
                "text": text,
                "parse_data": parse_data,
                "input_channel": input_channel,
                "message_id": uuid.uuid4().hex,
                "metadata": {},
            }
        )

    @property
    def intent(self) -> str:
        return str((self.latest_message.get("intent") or {}).get("name") or "")

    def state(self) -> dict[str, Any]:
        """The tracker as Rasa's HTTP API and its action calls give it."""
        return {
            "sender_id": self.sender_id,
            "slots": dict(self.slots),
            "latest_message": self.latest_message,
            "latest_event_time": self.events[-1]["timestamp"] if self.events else None,
            "followup_action": None,
            "paused": False,
            "events": list(self.events),
            "latest_input_channel": self.latest_input_channel,
            "active_loop": {},
            "latest_action": {"action_name": self.latest_action_name},
            "latest_action_name": self.latest_action_name,
        }
