"""Actions under test: rasa-sdk Tracker/CollectingDispatcher, the simulator as 8x8, real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rasa_sdk import Tracker

from bridge import host
from bridge.eightbyeight import make_client
from bridge.service import HandoffService
from bridge.settings import Settings
from bridge.simulator import Simulator, SimulatorConfig, running_simulator
from bridge.store import open_store
from bridge.store.base import Store

host.declare_in_process()  # before any test module imports `actions`


@dataclass
class World:
    sim: Simulator
    store: Store
    service: HandoffService
    settings: Settings


def tracker(
    sender: str,
    text: str,
    intent: str,
    *,
    confidence: float = 1.0,
    slots: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Tracker:
    """A tracker as Rasa sends it to the action server, after the user's latest turn."""
    latest = {"text": text, "intent": {"name": intent, "confidence": confidence}, "entities": [],
              "metadata": metadata or {}}  # fmt: skip
    events = [
        *(history or []),
        {"event": "user", "text": text, "parse_data": latest, "metadata": metadata or {}},
    ]
    return Tracker.from_dict(
        {
            "sender_id": sender,
            "slots": {"handoff_active": False, **(slots or {})},
            "latest_message": latest,
            "events": events,
            "paused": False,
            "followup_action": None,
            "active_loop": {},
            "latest_action_name": "action_listen",
        }
    )


def turn(user: str, intent: str, *handled_by: str, bot: str | None = None) -> list[dict[str, Any]]:
    """One earlier exchange, as tracker events."""
    events: list[dict[str, Any]] = [
        {
            "event": "user",
            "text": user,
            "parse_data": {"intent": {"name": intent, "confidence": 1.0}},
        },
        {"event": "action", "name": "action_extract_slots"},
    ]
    events += [{"event": "action", "name": name} for name in handled_by]
    if bot:
        events.append({"event": "bot", "text": bot})
    events.append({"event": "action", "name": "action_listen"})
    return events


@pytest.fixture(params=["gateway", "chat-v2"])
async def world(
    request: pytest.FixtureRequest, real_redis_url: str, key_prefix: str
) -> AsyncIterator[World]:
    api = str(request.param)
    cfg = SimulatorConfig(api_key="k", api_secret="s", tenant_id="t1", customer_id="c1", channel_id="ch1",
                          queue_id="101", webhook_url=None, api=api)  # fmt: skip
    async with running_simulator(cfg) as sim:
        settings = Settings(  # type: ignore[call-arg]
            eightbyeight_api=api, eightbyeight_base_url=sim.base_url, eightbyeight_api_key="k",
            eightbyeight_api_secret="s", eightbyeight_tenant_id="t1", eightbyeight_channel_id="ch1",
            redis_url=real_redis_url, redis_key_prefix=key_prefix,
        )  # fmt: skip
        store = await open_store(real_redis_url, prefix=key_prefix)
        chat = make_client(settings.eightbyeight())
        service = HandoffService(store, chat)
        yield World(sim, store, service, settings)
        await chat.close()
        await store.close()


@pytest.fixture
def w(world: World) -> Iterator[World]:
    """The world, handed to the actions the way the action server does it (per call)."""
    with host.serving(host.ActionContext(world.settings, world.service)):
        yield world
