"""Builds the service's parts from settings: store, 8x8 client, Rasa client, door, relay."""

from __future__ import annotations

import logging
import time
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
from bridge.recovery import RecoveryConfig, RecoveryLoop, Sweeper
from bridge.relay import Deliverer, Relay, RelayConfig
from bridge.service import HandoffService
from bridge.settings import Settings
from bridge.store import RedisStore, open_store
from bridge.store.base import Store, partition_of
from bridge.web.action_server import ActionServer
from bridge.web.upstream import Upstream
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
    recovery: RecoveryLoop | None = None  # None on a store other than Redis
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
        timing=settings.handoff_timing(),
        max_attempts=settings.relay_max_attempts,
        max_age_s=float(settings.relay_max_age_s),
        hold_s=float(settings.event_hold_s),
        backoff_cap_s=settings.relay_retry_cap_s,
        lease_ttl_ms=settings.relay_lease_ttl_ms,
    )


def recovery_loop(
    settings: Settings, store: Store, chat: ChatClient, metrics: Metrics,
    kick: Callable[[int], None], clock: Callable[[], float],
) -> RecoveryLoop | None:  # fmt: skip
    if not isinstance(store, RedisStore):
        return None
    config = RecoveryConfig(
        interval_s=settings.recovery_interval_s,
        horizon_s=settings.recovery_horizon_s,
        max_conversations=settings.recovery_max_conversations,
        calls_per_s=settings.recovery_calls_per_s,
        dedupe_ttl_s=settings.event_dedupe_ttl_s,
    )
    return RecoveryLoop(Sweeper(store, chat, metrics, config, kick=kick, clock=clock), clock)


async def build_runtime(
    settings: Settings, *, store: Store | None = None, clock: Callable[[], float] = time.time
) -> Runtime:
    """Everything `serve` needs, from settings (call `settings.check_for_serve()` first).
    `clock` is the time every timer and schedule is read from (tests move it)."""
    metrics = Metrics()
    if store is None:
        store = await open_store(
            settings.redis_url,
            prefix=settings.redis_key_prefix,
            partitions=settings.relay_partitions,
        )
    if isinstance(store, RedisStore):
        store.dead_letter_max_age_ms = settings.dead_letter_max_age_s * 1000
        store.event_dedupe_ttl_s = settings.event_dedupe_ttl_s
    chat = make_client(settings.eightbyeight())
    rasa = RasaClient(
        settings.rasa_url, token=settings.rasa_token, output_channel=settings.rasa_output_channel
    )
    config = relay_config(settings)
    realtime = settings.realtime()
    notices = Notices(
        RealtimeMetrics(realtime) if realtime else None, settings.handoff_agent_message_format
    )
    service = HandoffService(
        store,
        chat,
        on_linked=lambda cid: relay.kick(partition_of(cid, store.partitions)),
        clock=clock,
        timing=config.timing,
        hours=settings.opening_hours(),
        metrics=metrics,
    )
    deliverer = Deliverer(
        store,
        rasa,
        metrics,
        config,
        clock=clock,
        end_interaction=service.close_interaction,
        notices=notices,
    )
    relay = Relay(store, deliverer, metrics, config, clock=clock)
    verifier, is_transient = make_verifier(settings, chat)
    door = WebhookDoor(
        store=store,
        metrics=metrics,
        verifier=verifier,
        max_body_bytes=settings.bridge_max_body_bytes,
        dedupe_ttl_s=settings.event_dedupe_ttl_s,
        hand=relay.hand,
        plan=relay.plan,
        unplan=relay.unplan,
        owns=relay.owns,
        is_transient_key_error=is_transient,
        on_unavailable=lambda: recovery.request() if recovery else None,
    )
    recovery = recovery_loop(settings, store, chat, metrics, relay.kick, clock)
    host.declare_in_process()  # the actions, served below, call the service in-process
    upstream = (
        Upstream(settings.bridge_action_upstream, settings.bridge_action_upstream_timeout_s)
        if settings.bridge_action_upstream
        else None
    )
    actions = ActionServer(host.ActionContext(settings, service), upstream=upstream)
    runtime = Runtime(
        settings, store, chat, rasa, metrics, door, relay, service, OutboxDrainer(service), recovery
    )
    runtime.extra_routes += [
        Route("POST", "/webhook", actions.webhook),
        Route("GET", "/actions", actions.list_actions),
    ]
    runtime.notices = notices
    runtime._closers.extend([store.close, chat.close, rasa.close])
    if upstream is not None:
        runtime._closers.append(upstream.close)
    if notices.metrics is not None:
        runtime._closers.append(notices.metrics.close)
    return runtime
