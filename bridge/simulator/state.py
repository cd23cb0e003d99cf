"""Conversations and their lifecycle (spec §5), as plain data: no I/O, no event formats.

Each operation changes a `SimConversation` and returns what happened as a list of
`Happening`s in order. `events.py` turns those into the webhook events of one API family;
this module does not care which.

Fixed choices where the spec is silent ([INFERRED]):
- Create: the conversation is `created`, its first interaction starts at once (`active`) and
  is queued in the assignment queue, else the channel's queue.
- Agents act only while they hold the conversation: accept needs a live interaction with no
  agent; say, typing, leave and transfer need the agent. Anything else is `InvalidTransition`.
- Transfer keeps the interaction: the agent leaves, the conversation is queued again in the
  target queue (which becomes "the last queue"), and another agent may accept.
- Agent leave and customer leave both end the interaction; the conversation goes `idle`.
  Customer leave on an idle conversation changes nothing and reports nothing.
- Any message posted through the API (user or bot) on an idle conversation reopens it: a new
  interaction in the last queue, queued again, and then the message, which belongs to it.
- The create's `history` is kept apart from later messages; it happened before 8x8 knew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.eightbyeight.config import ApiFamily
from bridge.simulator.ids import interaction_id, iso, random_id

ConversationState = Literal["created", "active", "idle"]
AuthorType = Literal["user", "bot", "agent", "system"]


class InvalidTransition(Exception):
    """The operation does not fit the conversation's state (e.g. an agent says something
    before accepting)."""


class UnknownConversation(LookupError):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"no conversation {conversation_id!r}")
        self.conversation_id = conversation_id


@dataclass(frozen=True, slots=True)
class Agent:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class SimMessage:
    author_type: str  # user | bot | agent
    text: str
    interaction_id: str | None
    created_at: str  # ISO-8601 UTC
    id: str = ""
    author_id: str | None = None  # the agent's id for agent messages
    author_name: str | None = None


@dataclass(slots=True)
class SimInteraction:
    id: str
    queue_id: str
    start_ms: int
    end_ms: int | None = None
    agents: list[Agent] = field(default_factory=list)  # everyone who accepted it, in order
    accepted_ms: int | None = None  # when the first agent accepted it: its wait in the queue

    @property
    def live(self) -> bool:
        return self.end_ms is None


@dataclass(slots=True)
class SimConversation:
    id: str
    api: ApiFamily  # the REST API that created it
    channel_id: str
    customer: dict[str, Any]  # as posted: a gateway `user` or a v2 `customer`
    created_ms: int
    queue_id: str  # the current queue, or the last one once idle
    state: ConversationState = "created"
    agent: Agent | None = None
    user_present: bool = True
    history: list[SimMessage] = field(default_factory=list)
    messages: list[SimMessage] = field(default_factory=list)
    interactions: list[SimInteraction] = field(default_factory=list)

    @property
    def interaction(self) -> SimInteraction | None:
        """The live interaction, if any."""
        if self.interactions and self.interactions[-1].live:
            return self.interactions[-1]
        return None

    @property
    def agents(self) -> list[Agent]:
        """Every agent that ever accepted it, first come first."""
        seen: dict[str, Agent] = {}
        for interaction in self.interactions:
            for agent in interaction.agents:
                seen.setdefault(agent.id, agent)
        return list(seen.values())


# --- what happened (family-neutral) ---


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The conversation's state or assignment changed (gateway CONVERSATION_UPDATE)."""

    conversation_id: str
    timestamp_ms: int
    state: ConversationState
    assignment_type: Literal["queue", "agent"]
    assignment_id: str


@dataclass(frozen=True, slots=True)
class Queued:
    conversation_id: str
    timestamp_ms: int
    queue_id: str


@dataclass(frozen=True, slots=True)
class AgentJoined:
    conversation_id: str
    timestamp_ms: int
    agent: Agent


@dataclass(frozen=True, slots=True)
class AgentLeft:
    conversation_id: str
    timestamp_ms: int
    agent: Agent


@dataclass(frozen=True, slots=True)
class UserLeft:
    conversation_id: str
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Transferred:
    conversation_id: str
    timestamp_ms: int
    from_queue: str
    to_queue: str


@dataclass(frozen=True, slots=True)
class MessageAdded:
    conversation_id: str
    timestamp_ms: int
    message: SimMessage


@dataclass(frozen=True, slots=True)
class TypingChanged:
    conversation_id: str
    timestamp_ms: int
    agent: Agent
    on: bool


Happening = (
    StateChanged
    | Queued
    | AgentJoined
    | AgentLeft
    | UserLeft
    | Transferred
    | MessageAdded
    | TypingChanged
)


# --- the lifecycle ---


def new_conversation(
    *,
    api: ApiFamily,
    channel_id: str,
    customer: dict[str, Any],
    history: list[tuple[str, str]],
    queue_id: str,
    tenant_id: str,
    now_ms: int,
) -> tuple[SimConversation, list[Happening]]:
    """Create a conversation and route its first interaction to `queue_id`."""
    conv = SimConversation(
        id=random_id(),
        api=api,
        channel_id=channel_id,
        customer=customer,
        created_ms=now_ms,
        queue_id=queue_id,
    )
    happened: list[Happening] = [StateChanged(conv.id, now_ms, "created", "queue", queue_id)]
    happened += _start_interaction(conv, tenant_id, now_ms)
    first = conv.interactions[0].id
    conv.history = [
        SimMessage(author, text, first, iso(now_ms), id=random_id()) for author, text in history
    ]
    return conv, happened


def post_message(
    conv: SimConversation, author_type: str, text: str, *, tenant_id: str, now_ms: int
) -> tuple[SimMessage, list[Happening]]:
    """A user or bot message through the API; reopens an idle conversation first."""
    happened: list[Happening] = []
    if conv.interaction is None:
        conv.user_present = True  # the user rejoins (8x8's CUSTOMER_REJOINED)
        happened += _start_interaction(conv, tenant_id, now_ms)
    message = _add_message(conv, author_type, text, now_ms)
    happened.append(MessageAdded(conv.id, now_ms, message))
    return message, happened


def customer_leave(conv: SimConversation, *, now_ms: int) -> list[Happening]:
    """The user leaves: the live interaction ends (nothing happens if there is none)."""
    if conv.interaction is None:
        return []
    conv.user_present = False
    happened: list[Happening] = [UserLeft(conv.id, now_ms)]
    return happened + _end_interaction(conv, now_ms)


def accept(conv: SimConversation, agent: Agent, *, now_ms: int) -> list[Happening]:
    interaction = conv.interaction
    if interaction is None:
        raise InvalidTransition("no interaction is waiting: the conversation is idle")
    if conv.agent is not None:
        raise InvalidTransition(f"agent {conv.agent.name!r} already holds the conversation")
    conv.agent = agent
    interaction.agents.append(agent)
    if interaction.accepted_ms is None:
        interaction.accepted_ms = now_ms
    return [
        AgentJoined(conv.id, now_ms, agent),
        StateChanged(conv.id, now_ms, conv.state, "agent", agent.id),
    ]


def agent_say(conv: SimConversation, text: str, *, now_ms: int) -> list[Happening]:
    agent = _holding_agent(conv)
    message = _add_message(conv, "agent", text, now_ms, agent)
    return [MessageAdded(conv.id, now_ms, message)]


def agent_typing(conv: SimConversation, on: bool, *, now_ms: int) -> list[Happening]:
    return [TypingChanged(conv.id, now_ms, _holding_agent(conv), on)]


def agent_leave(conv: SimConversation, *, now_ms: int) -> list[Happening]:
    _holding_agent(conv)
    return _end_interaction(conv, now_ms)


def transfer(conv: SimConversation, queue_id: str, *, now_ms: int) -> list[Happening]:
    agent = _holding_agent(conv)
    from_queue, conv.queue_id, conv.agent = conv.queue_id, queue_id, None
    return [
        Transferred(conv.id, now_ms, from_queue, queue_id),
        AgentLeft(conv.id, now_ms, agent),
        Queued(conv.id, now_ms, queue_id),
    ]


def _holding_agent(conv: SimConversation) -> Agent:
    if conv.agent is None:
        raise InvalidTransition("no agent holds the conversation")
    return conv.agent


def _start_interaction(conv: SimConversation, tenant_id: str, now_ms: int) -> list[Happening]:
    conv.interactions.append(
        SimInteraction(interaction_id(tenant_id, now_ms), conv.queue_id, now_ms)
    )
    conv.state = "active"
    return [
        StateChanged(conv.id, now_ms, "active", "queue", conv.queue_id),
        Queued(conv.id, now_ms, conv.queue_id),
    ]


def _end_interaction(conv: SimConversation, now_ms: int) -> list[Happening]:
    happened: list[Happening] = []
    if conv.agent is not None:
        happened.append(AgentLeft(conv.id, now_ms, conv.agent))
        conv.agent = None
    interaction = conv.interaction
    if interaction is not None:
        interaction.end_ms = now_ms
    conv.state = "idle"
    happened.append(StateChanged(conv.id, now_ms, "idle", "queue", conv.queue_id))
    return happened


def _add_message(
    conv: SimConversation, author_type: str, text: str, now_ms: int, agent: Agent | None = None
) -> SimMessage:
    interaction = conv.interaction
    message = SimMessage(
        author_type,
        text,
        interaction.id if interaction else None,
        iso(now_ms),
        id=random_id(),
        author_id=agent.id if agent else None,
        author_name=agent.name if agent else None,
    )
    conv.messages.append(message)
    return message
