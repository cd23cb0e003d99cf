"""Webhook event bodies of both families, from the lifecycle's happenings (spec §3, §4.9).

Fixed choices ([INFERRED] where the spec is silent):

Chat Gateway (fields under `data`, no agent names: MEMBERS_CHANGED has none and MESSAGE's
documented `sender` is only `{id, type}`):
- create:        CONVERSATION_UPDATE(created), CONVERSATION_UPDATE(active), QUEUED
- accept:        MEMBERS_CHANGED(agent joined), CONVERSATION_UPDATE(active, assignment agent)
- agent says:    MESSAGE(sender agent, isEcho false)
- agent typing:  ACTIVITY typing (users [agent], or [] when it stops)
- user/bot msg:  MESSAGE(sender user|bot, isEcho true)
- agent leaves:  MEMBERS_CHANGED(agent left), CONVERSATION_UPDATE(idle)
- user leaves:   MEMBERS_CHANGED(user left), MEMBERS_CHANGED(agent left) if an agent held it,
                 CONVERSATION_UPDATE(idle)
- transfer:      TRANSFER, MEMBERS_CHANGED(agent left), QUEUED(new queue)
- reopen:        CONVERSATION_UPDATE(active), QUEUED, then the MESSAGE echo of the message

Chat API v2 (flat fields with `messageType`; only agent messages become events):
- create: QUEUED.  accept: AGENT_JOINED.  agent says: TEXT.  agent leaves: AGENT_LEFT.
- customer leaves: AGENT_LEFT only when an agent held the conversation, else nothing.
- transfer: TRANSFER, AGENT_LEFT, QUEUED(new queue).  reopen: QUEUED.
- typing, state changes and user/bot messages produce nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bridge.eightbyeight.config import ApiFamily
from bridge.simulator.customer import language, shown_as
from bridge.simulator.state import (
    AgentJoined,
    AgentLeft,
    Happening,
    MessageAdded,
    Queued,
    SimConversation,
    SimMessage,
    StateChanged,
    Transferred,
    TypingChanged,
    UserLeft,
)

Event = dict[str, Any]

GATEWAY_WEBHOOK_VERSION = "Chat Gateway v1.0"
V2_WEBHOOK_VERSION = "v2.0"


# Queues have the names an administrator gives them in 8x8's Configuration Manager; the
# simulator's read as a real contact center's would. Any other queue id gets a generic name.
QUEUE_NAMES: Final = {"101": "Customer Support", "202": "Billing", "303": "Sales"}


def queue_name(queue_id: str) -> str:
    return QUEUE_NAMES.get(queue_id, f"Queue {queue_id}")


def user_participant_id(conv: SimConversation, api: ApiFamily) -> str:
    """The user's participant id: v2 documents the literal "Customer"; the gateway has the
    user's own `userId` when one was given."""
    if api == "chat-v2":
        return "Customer"
    user = shown_as("gateway", conv.customer, conv.api)
    return str(user.get("userId") or f"user-{conv.id}")


def bot_participant_id(api: ApiFamily) -> str:
    return "Bot" if api == "chat-v2" else "bot"


def participants(conv: SimConversation, api: ApiFamily) -> list[dict[str, Any]]:
    """Everyone who took part: the user, the bot (once it has said something) and each agent
    that ever accepted; `removed` tells who is no longer in it."""
    lang = language(conv.customer)  # a plain key in both shapes
    out = [
        {
            "id": user_participant_id(conv, api),
            "removed": not conv.user_present,
            "type": "user",
            "language": lang,
        }
    ]
    if any(m.author_type == "bot" for m in conv.history + conv.messages):
        out.append(
            {"id": bot_participant_id(api), "removed": False, "type": "bot", "language": lang}
        )
    for agent in conv.agents:
        removed = conv.agent is None or conv.agent.id != agent.id
        out.append({"id": agent.id, "removed": removed, "type": "agent", "language": lang})
    return out


def author_id(conv: SimConversation, message: SimMessage, api: ApiFamily) -> str:
    if message.author_type == "agent":
        return message.author_id or ""
    if message.author_type == "bot":
        return bot_participant_id(api)
    return user_participant_id(conv, api)


def verify_event(version: str) -> Event:
    return {"notificationVersion": version, "eventType": "WEB_HOOK_VERIFY"}


def render(api: ApiFamily, conv: SimConversation, happening: Happening) -> list[Event]:
    """The events `happening` produces in the `api` family, in order (maybe none)."""
    if api == "gateway":
        return _gateway(conv, happening)
    return _v2(happening)


def _gateway_event(event_type: str, h: Happening, data: Mapping[str, Any] | None) -> Event:
    event: Event = {
        "eventType": event_type,
        "conversationId": h.conversation_id,
        "timestamp": h.timestamp_ms,
    }
    if data is not None:
        event["data"] = dict(data)
    return event


def _gateway(conv: SimConversation, h: Happening) -> list[Event]:
    match h:
        case StateChanged():
            data = {
                "state": h.state,
                "assignment": {"type": h.assignment_type, "id": h.assignment_id},
                "user": shown_as("gateway", conv.customer, conv.api),
                "channel": "ChatAPI",
            }
            return [_gateway_event("CONVERSATION_UPDATE", h, data)]
        case Queued():
            data = {"queueId": h.queue_id, "queueName": queue_name(h.queue_id)}
            return [_gateway_event("QUEUED", h, data)]
        case AgentJoined() | AgentLeft():
            change = "joined" if isinstance(h, AgentJoined) else "left"
            data = {"memberType": "agent", "change": change, "id": h.agent.id}
            return [_gateway_event("MEMBERS_CHANGED", h, data)]
        case UserLeft():
            data = {
                "memberType": "user",
                "change": "left",
                "id": user_participant_id(conv, "gateway"),
            }
            return [_gateway_event("MEMBERS_CHANGED", h, data)]
        case Transferred():
            return [_gateway_event("TRANSFER", h, None)]
        case MessageAdded():
            return [_gateway_event("MESSAGE", h, _gateway_message(conv, h))]
        case TypingChanged():
            users = [{"type": "agent", "id": h.agent.id}] if h.on else []
            data = {"name": "typing", "value": {"users": users}}
            return [_gateway_event("ACTIVITY", h, data)]
    return []


def _gateway_message(conv: SimConversation, h: MessageAdded) -> dict[str, Any]:
    message = h.message
    if message.author_type == "agent":
        sender = {"id": message.author_id, "type": "agent"}
    elif message.author_type == "bot":
        sender = {"id": bot_participant_id("gateway"), "type": "bot"}
    else:
        sender = {"id": user_participant_id(conv, "gateway"), "type": "user"}
    # MESSAGE fires for every participant; what came in through the API is the echo.
    return {
        "isEcho": message.author_type != "agent",
        "sender": sender,
        "text": message.text,
        "attachments": [],
        "cards": [],
    }


def _v2_event(event_type: str, message_type: str, h: Happening, **fields: Any) -> Event:
    # Key order as in 8x8's real signed example: type, messageType, conversationId, fields, time.
    event: Event = {
        "eventType": event_type,
        "messageType": message_type,
        "conversationId": h.conversation_id,
    }
    event.update(fields)
    event["timestamp"] = h.timestamp_ms
    return event


def _v2(h: Happening) -> list[Event]:
    match h:
        case Queued():
            return [
                _v2_event(
                    "QUEUED", "SYSTEM", h, queueId=h.queue_id, queueName=queue_name(h.queue_id)
                )
            ]
        case AgentJoined() | AgentLeft():
            kind = "AGENT_JOINED" if isinstance(h, AgentJoined) else "AGENT_LEFT"
            return [_v2_event(kind, "SYSTEM", h, agentId=h.agent.id, agentName=h.agent.name)]
        case Transferred():
            return [_v2_event("TRANSFER", "SYSTEM", h)]
        case MessageAdded() if h.message.author_type == "agent":
            m = h.message
            return [
                _v2_event(
                    "TEXT", "AGENT", h, agentId=m.author_id, agentName=m.author_name, message=m.text
                )
            ]
    return []
