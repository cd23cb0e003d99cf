"""Builds the service's parts from settings: store, 8x8 client, Rasa client, door, relay."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge import host
from bridge.eightbyeight import make_client
from bridge.eightbyeight.client import ChatClient
from bridge.eightbyeight.realtime import RealtimeMetrics
from bridge.metrics import Metrics
from bridge.notices import Notices
from bridge.outbox import OutboxDrainer
from bridge.rasa.client import RasaClient
from bridge.relay import Deliverer, Relay, RelayConfig
from bridge.service import HandoffService
from bridge.settings import Settings
from bridge.store import open_store
from bridge.store.base import Store, partition_of
from bridge.web.action_server import ActionServer
from bridge.web.verification import make_verifier
from bridge.web.webhook import WebhookDoor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Runtime:
    settings: Settings
    store: Store
    chat: ChatClient
    rasa: RasaClient
    metrics: Metrics
    door: WebhookDoor
    relay: Relay
    service: HandoffService
    outbox: OutboxDrainer
    extra_routes: list[Route] = field(default_factory=list)
    notices: Notices | None = None  # the queue's and agents' words (queue_notice needs its metrics)
    _closers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)

    async def close(self) -> None:
        for close in reversed(self._closers):
            try:
                await close()
            except Exception:  # closing must go on for the others
                log.exception("close_failed")


def relay_config(settings: Settings) -> RelayConfig:
    return RelayConfig(
        max_attempts=settings.relay_max_attempts,
        max_age_s=float(settings.relay_max_age_s),
        hold_s=float(settings.event_hold_s),
        backoff_cap_s=settings.relay_retry_cap_s,
        lease_ttl_ms=settings.relay_lease_ttl_ms,
    )


async def build_runtime(settings: Settings, *, store: Store | None = None) -> Runtime:
    """Everything `serve` needs, from settings (call `settings.check_for_serve()` first)."""
    metrics = Metrics()
    if store is None:
        store = await open_store(
            settings.redis_url,
            prefix=settings.redis_key_prefix,
            partitions=settings.relay_partitions,
        )
    chat = make_client(settings.eightbyeight())
    rasa = RasaClient(
        settings.rasa_url, token=settings.rasa_token, output_channel=settings.rasa_output_channel
    )
    config = relay_config(settings)
    realtime = settings.realtime()
    notices = Notices(
        RealtimeMetrics(realtime) if realtime else None, settings.handoff_agent_message_format
    )
    relay = Relay(store, Deliverer(store, rasa, metrics, config, notices=notices), metrics, config)
    verifier, is_transient = make_verifier(settings, chat)
    door = WebhookDoor(
        store=store,
        metrics=metrics,
        verifier=verifier,
        max_body_bytes=settings.bridge_max_body_bytes,
        dedupe_ttl_s=settings.event_dedupe_ttl_s,
        kick=relay.kick,
        is_transient_key_error=is_transient,
    )
    service = HandoffService(
        store, chat, on_linked=lambda cid: relay.kick(partition_of(cid, store.partitions))
    )
    host.install(service, settings)  # the actions, served below, call it in-process
    actions = ActionServer()
    runtime = Runtime(
        settings, store, chat, rasa, metrics, door, relay, service, OutboxDrainer(service)
    )
    runtime.extra_routes += [
        Route("POST", "/webhook", actions.webhook),
        Route("GET", "/actions", actions.list_actions),
    ]
    runtime.notices = notices
    runtime._closers.extend([store.close, chat.close, rasa.close])
    if notices.metrics is not None:
        runtime._closers.append(notices.metrics.close)
    return runtime
