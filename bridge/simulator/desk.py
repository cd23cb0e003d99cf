"""The scriptable agent desk: what a human agent in 8x8 would do, one call per action.

Each call changes the conversation and returns once the resulting webhook events are queued
for delivery (not delivered: use `Simulator.wait_for_deliveries` or `idle` for that).
Raises `UnknownConversation` for an unknown id, `InvalidTransition` when the action does not
fit the conversation's state, and ValueError for bad arguments.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.simulator import state
from bridge.simulator.ids import now_ms, random_id
from bridge.simulator.state import Agent, SimMessage

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value


class Desk:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def accept(
        self, conversation_id: str, agent_name: str = "Anna", agent_id: str | None = None
    ) -> Agent:
        """An agent takes the waiting conversation."""
        conv = self._sim.conversation(conversation_id)
        agent = Agent(
            id=_text(agent_id, "agent_id") if agent_id is not None else "ag" + random_id(),
            name=_text(agent_name, "agent_name"),
        )
        self._sim.apply(conv, state.accept(conv, agent, now_ms=now_ms()))
        return agent

    async def say(self, conversation_id: str, text: str) -> SimMessage:
        conv = self._sim.conversation(conversation_id)
        happened = state.agent_say(conv, _text(text, "text"), now_ms=now_ms())
        self._sim.apply(conv, happened)
        return conv.messages[-1]

    async def typing(self, conversation_id: str, on: bool = True) -> None:
        """Gateway ACTIVITY typing; Chat API v2 has no such event, so nothing is sent there."""
        if not isinstance(on, bool):
            raise ValueError("on must be true or false")
        conv = self._sim.conversation(conversation_id)
        self._sim.apply(conv, state.agent_typing(conv, on, now_ms=now_ms()))

    async def leave(self, conversation_id: str) -> None:
        """The agent ends the interaction."""
        conv = self._sim.conversation(conversation_id)
        self._sim.apply(conv, state.agent_leave(conv, now_ms=now_ms()))

    async def transfer(self, conversation_id: str, queue_id: str) -> None:
        """The agent moves the conversation to another queue."""
        conv = self._sim.conversation(conversation_id)
        happened = state.transfer(conv, _text(queue_id, "queue_id"), now_ms=now_ms())
        self._sim.apply(conv, happened)
