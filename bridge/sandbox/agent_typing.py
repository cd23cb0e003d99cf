"""The agent's typing indicator in the customer's chat.

The bridge does not pass typing on to Rasa (Rasa's HTTP API has no way to show it; see
`bridge.eightbyeight.events.RELAYED_KINDS`), so a real front end would not show it. The sandbox shows it
anyway, from the signed ACTIVITY event the simulator delivered to the bridge: exactly what
8x8 said, never a shortcut from the desk's buttons. Chat API v2 has no typing event, so with
`--api chat-v2` the chat pane shows none.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bridge.eightbyeight.events import EventKind, parse_event
from bridge.ids import ConversationId
from bridge.sandbox.chat import ChatHub
from bridge.simulator import Simulator
from bridge.simulator.notices import Subscription
from bridge.store.base import Store

log = logging.getLogger(__name__)


async def show_agent_typing(
    sim: Simulator, subscription: Subscription, store: Store, hub: ChatHub
) -> None:
    """Until the simulator stops: each delivered typing event goes to its sender's chat."""
    async for notice in subscription:
        if notice.get("type") != "delivery":
            continue
        try:
            await _show(sim, notice.get("delivery") or {}, store, hub)
        except Exception:  # one odd event must not end the indicator for everyone
            log.exception("typing_indicator_failed")


async def _show(sim: Simulator, delivery: dict[str, Any], store: Store, hub: ChatHub) -> None:
    if not delivery.get("ok") or delivery.get("eventType") != "ACTIVITY":
        return
    event = parse_event(json.loads(delivery.get("body") or "{}"))
    if event.kind is not EventKind.TYPING or event.conversation_id is None:
        return
    sender = await store.sender_of(ConversationId(event.conversation_id))
    if sender is None:
        return
    conv = sim.conversations.get(event.conversation_id)
    agent = conv.agent.name if conv is not None and conv.agent is not None else None
    hub.publish(sender, {"kind": "typing", "on": bool(event.typing), "agent": agent})
