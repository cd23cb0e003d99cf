"""JSON views of the simulator's state for the desk control API and change notices."""

from __future__ import annotations

from typing import Any

from bridge.simulator.delivery import Delivery
from bridge.simulator.ids import iso
from bridge.simulator.state import Agent, SimConversation, SimInteraction, SimMessage


def agent_view(agent: Agent | None) -> dict[str, str] | None:
    return {"id": agent.id, "name": agent.name} if agent else None


def message_view(message: SimMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "authorType": message.author_type,
        "text": message.text,
        "interactionId": message.interaction_id,
        "createdAt": message.created_at,
        "authorId": message.author_id,
        "authorName": message.author_name,
    }


def interaction_view(interaction: SimInteraction) -> dict[str, Any]:
    return {
        "id": interaction.id,
        "queueId": interaction.queue_id,
        "startTime": iso(interaction.start_ms),
        "endTime": iso(interaction.end_ms) if interaction.end_ms is not None else None,
        "agents": [agent_view(a) for a in interaction.agents],
    }


def conversation_view(conv: SimConversation) -> dict[str, Any]:
    return {
        "id": conv.id,
        "api": conv.api,
        "channelId": conv.channel_id,
        "state": conv.state,
        "queueId": conv.queue_id,
        "agent": agent_view(conv.agent),
        "userPresent": conv.user_present,
        "customer": conv.customer,
        "createdAt": iso(conv.created_ms),
        "history": [message_view(m) for m in conv.history],
        "messages": [message_view(m) for m in conv.messages],
        "interactions": [interaction_view(i) for i in conv.interactions],
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "eventId": delivery.event_id,
        "eventType": delivery.event_type,
        "conversationId": delivery.conversation_id,
        "retry": delivery.retry,
        "status": delivery.status,
        "ok": delivery.ok,
        "final": delivery.final,
        "gaveUp": delivery.gave_up,
        "error": delivery.error,
        "url": delivery.url,
        "at": iso(delivery.at_ms),
        "headers": dict(delivery.headers),
        "body": delivery.body.decode("utf-8"),
    }
