"""What recovery should relay for one live handoff: pure decisions over what 8x8 lists and
what the handoff record says. No I/O: the sweep (`sweep.py`) fetches, these decide.

- Messages: the agent's messages of the current interaction(s), since the handoff began, each
  with its identity (bridge/relay/identity.py) counted over the whole conversation. Whether
  one was relayed already is the store's answer, not decided here.
- State: an agent's join or leave the record never heard of, read from the participants
  (Chat Gateway: `removed`) or from the current interaction's end (Chat API v2, whose
  participants do not say who left), as one synthetic event for the state machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.eightbyeight.client import Conversation, ConversationMessage, Participant
from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.eightbyeight.wire import epoch_ms
from bridge.handoff import Handoff, State
from bridge.ids import EventId
from bridge.relay.identity import MessageIdentity, listed_identities

_WAITING = frozenset({State.REQUESTED, State.QUEUED, State.TRANSFERRING})


@dataclass(frozen=True, slots=True)
class Missed:
    """A message or state change 8x8 lists. `item` names it for the horizon's bookkeeping;
    `written_ms` is 8x8's own time for it, when 8x8 gives one (Gateway messages)."""

    item: str
    event: ChatEvent
    identity: MessageIdentity | None = None  # messages only
    event_id: EventId | None = None  # state changes only (messages use their identity's)
    written_ms: int | None = None


def agent_messages(
    handoff: Handoff,
    conversation: Conversation | None,
    messages: Sequence[ConversationMessage],
    tolerance_ms: int,
) -> list[Missed]:
    """The agent's messages of the current handoff, oldest first, with their identities.
    Gateway: written (`createdAt`) since the handoff began; a message without a time is left
    alone. Chat API v2 (no times on messages): those of the interactions begun since then."""
    cid = handoff.conversation_id
    if cid is None:
        return []
    by_agent = [m for m in messages if m.author_type == "agent"]
    identities = listed_identities(m.text for m in by_agent)
    since = handoff.since_ms - tolerance_ms
    current = _current_interactions(conversation, since)
    out = []
    for message, identity in zip(by_agent, identities, strict=True):
        written = epoch_ms(message.created_at)
        if message.interaction_id is not None:
            if message.interaction_id not in current:
                continue
        elif written is None or written < since:
            continue
        event = ChatEvent(
            EventKind.AGENT_MESSAGE, "RECOVERED", cid, timestamp_ms=written, text=message.text
        )
        item = f"{cid}:m:{identity.digest}:{identity.ordinal}"
        out.append(Missed(item, event, identity=identity, written_ms=written))
    return out


def _current_interactions(conversation: Conversation | None, since_ms: int) -> set[str]:
    """The v2 interactions begun since the handoff did; the last one when 8x8 gave no times."""
    if conversation is None or not conversation.interactions:
        return set()
    timed = {i.id for i in conversation.interactions if (i.start_ms or 0) >= since_ms}
    if any(i.start_ms is not None for i in conversation.interactions):
        return timed
    return {conversation.interactions[-1].id}


def state_change(
    handoff: Handoff,
    conversation: Conversation | None,
    participants: Sequence[Participant],
    tolerance_ms: int,
) -> Missed | None:
    """The one join or leave that would bring the record in line with 8x8, if any."""
    cid = handoff.conversation_id
    if cid is None:
        return None
    agents = [p for p in participants if p.type == "agent"]
    present = [p.id for p in agents if p.removed is False]
    if agents and all(p.removed is not None for p in agents):  # Gateway: it says who left
        if present and (handoff.state in _WAITING or _replaced(handoff, present)):
            return _synthetic(handoff, EventKind.AGENT_JOINED, present[-1])
        if not present and handoff.state is State.WITH_AGENT:
            return _synthetic(handoff, EventKind.AGENT_LEFT, handoff.agent_id)
        return None
    ended = _interaction_ended(conversation, handoff, tolerance_ms)
    if handoff.state is State.WITH_AGENT and ended:
        return _synthetic(handoff, EventKind.AGENT_LEFT, handoff.agent_id)
    return None


def _replaced(handoff: Handoff, present: list[str]) -> bool:
    """Another agent has the chat now (a transfer whose events were lost)."""
    return (
        handoff.state is State.WITH_AGENT
        and handoff.agent_id is not None
        and handoff.agent_id not in present
    )


def _interaction_ended(conversation: Conversation | None, handoff: Handoff, tol: int) -> bool:
    if conversation is None or not conversation.interactions:
        return False
    last = conversation.interactions[-1]
    begun_since = last.start_ms is None or last.start_ms >= handoff.since_ms - tol
    return begun_since and last.end_ms is not None


def _synthetic(handoff: Handoff, kind: EventKind, agent: str | None) -> Missed:
    """A synthetic event, named by what it changes and the record version it was read from:
    two sweeps that read the same record enqueue it once; a later, new drift is new."""
    cid = handoff.conversation_id
    assert cid is not None
    name = f"{cid}|{kind.value}|{agent or ''}|{handoff.changed_ms}"
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=12).hexdigest()
    event = ChatEvent(kind, "RECOVERED", cid, agent_id=agent)
    return Missed(f"{cid}:s:{digest}", event, event_id=EventId(f"rcv:{digest}"))
