"""The simulator object: 8x8's state, its lifecycle operations, delivery and the desk, in one
place that both REST APIs, the desk control API and Python tests drive."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

from bridge.eightbyeight.config import ApiFamily
from bridge.simulator import state
from bridge.simulator.auth import TokenIssuer
from bridge.simulator.config import SimulatorConfig
from bridge.simulator.delivery import Deliverer, Delivery, QueuedEvent
from bridge.simulator.desk import Desk
from bridge.simulator.events import (
    GATEWAY_WEBHOOK_VERSION,
    V2_WEBHOOK_VERSION,
    render,
    verify_event,
)
from bridge.simulator.faults import Faults
from bridge.simulator.ids import now_ms
from bridge.simulator.keys import SigningKeys
from bridge.simulator.notices import Notices, Subscription
from bridge.simulator.provisioning import Provisioning
from bridge.simulator.server import RecordedRequest, SimServer
from bridge.simulator.state import (
    Agent,
    Happening,
    MessageAdded,
    SimConversation,
    SimMessage,
    UnknownConversation,
)
from bridge.simulator.views import conversation_view, delivery_view, message_view

log = logging.getLogger("bridge.simulator")


class Simulator:
    """A local 8x8. Use `running_simulator()` to get a started one."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.keys = SigningKeys()
        self.tokens = TokenIssuer(config.token_ttl_s)
        self.rtm_tokens = TokenIssuer(config.token_ttl_s)  # Real-time Metrics API tokens
        # Real-time metric values that replace the computed ones, per queue (a busy queue).
        self.realtime_overrides: dict[str, dict[str, Any]] = {}
        self._listed_agents: dict[str, Agent] = {}
        self.faults = Faults()
        self.provisioning = Provisioning()
        self.desk = Desk(self)
        self.conversations: dict[str, SimConversation] = {}
        self.requests: list[RecordedRequest] = []
        self.token_requests = 0
        self.deliveries: list[Delivery] = []
        self._webhook_url = config.webhook_url
        self._notices = Notices()
        self._stopping = asyncio.Event()
        # Requests held by timeout faults right now: tests wait on it rather than on time.
        self.hanging = 0
        self.hangs_abandoned = 0
        self._delivered = asyncio.Event()  # replaced after each delivery; see _record()
        self._base_url: str | None = None
        self._server: SimServer | None = None
        self._deliverer = Deliverer(
            tenant_id=config.tenant_id,
            customer_id=config.customer_id,
            retry_delays=config.delivery_retry_delays,
            timeout_s=config.delivery_timeout_s,
            keys=self.keys,
            faults=self.faults,
            target=self.webhook_target,
            record=self._record,
        )
        # The channel named in the config exists from the start, pointing at a webhook whose
        # uri is the default target, so a bridge can start without provisioning anything.
        version = GATEWAY_WEBHOOK_VERSION if config.api == "gateway" else V2_WEBHOOK_VERSION
        hook = self.provisioning.add_webhook("Simulator webhook", config.webhook_url or "", version)
        self._seed_webhook_id = hook.id
        self.provisioning.add_channel(
            "Simulator channel", hook.id, config.queue_id, id_=config.channel_id
        )

    # --- running ---

    @property
    def base_url(self) -> str:
        """Where the simulator listens (EIGHTBYEIGHT_BASE_URL for the bridge)."""
        if self._base_url is None:
            raise RuntimeError("the simulator is not running")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("a simulator starts once")
        await self._deliverer.start()
        self._server = SimServer(self)
        try:
            self._base_url = await self._server.start(host, port)
        except BaseException:
            await self._deliverer.close()
            raise

    async def stop(self) -> None:
        self._stopping.set()  # frees requests held by timeout faults
        self._notices.close()  # ends event streams, so the server can shut down
        if self._server is not None:
            await self._server.stop()
        await self._deliverer.close()
        self._base_url = None

    async def hang(self) -> None:
        """Hold a request past any client's timeout (or until the simulator stops)."""
        self.hanging += 1
        try:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.fault_hang_s)
        except asyncio.CancelledError:
            self.hangs_abandoned += 1  # the client gave up and the server dropped the request
            raise
        finally:
            self.hanging -= 1

    # --- where events go ---

    @property
    def webhook_url(self) -> str | None:
        return self._webhook_url

    @property
    def retry_delays(self) -> tuple[float, ...]:
        """Pauses before each webhook retry; after the last one an event is given up."""
        return self._deliverer.retry_delays

    def set_retry_delays(self, delays: tuple[float, ...]) -> None:
        """Change the webhook retry schedule (e.g. `()`: one attempt, then give up)."""
        self._deliverer.set_retry_delays(delays)

    def set_webhook_url(self, url: str | None) -> None:
        """Change the default target (and the seeded webhook, which points there)."""
        self._webhook_url = url
        hook = self.provisioning.webhooks.get(self._seed_webhook_id)
        if hook is not None:
            hook.uri = url or ""

    def webhook_target(self, conversation_id: str | None) -> str | None:
        """The uri of the conversation's channel's webhook, else the default target."""
        conv = self.conversations.get(conversation_id) if conversation_id else None
        uri = self.provisioning.webhook_uri_for(conv.channel_id) if conv else None
        return uri or self._webhook_url

    # --- lifecycle operations (the REST APIs and the desk call these) ---

    def conversation(self, conversation_id: str) -> SimConversation:
        conv = self.conversations.get(conversation_id)
        if conv is None:
            raise UnknownConversation(conversation_id)
        return conv

    def create_conversation(
        self,
        *,
        api: ApiFamily,
        channel_id: str,
        customer: dict[str, Any],
        history: list[tuple[str, str]],
        queue_id: str,
    ) -> tuple[SimConversation, QueuedEvent]:
        """Create and queue a conversation. Unless `early_events`, its events wait for
        release() (the create's answer goes out first). Returns its first queued event."""
        conv, happened = state.new_conversation(
            api=api,
            channel_id=channel_id,
            customer=customer,
            history=history,
            queue_id=queue_id,
            tenant_id=self.config.tenant_id,
            now_ms=now_ms(),
        )
        self.conversations[conv.id] = conv
        queued = self.apply(conv, happened, hold=not self.config.early_events)
        return conv, queued[0]

    def release(self, conversation_id: str) -> None:
        self._deliverer.release(conversation_id)

    def post_message(self, conv: SimConversation, author_type: str, text: str) -> SimMessage:
        message, happened = state.post_message(
            conv, author_type, text, tenant_id=self.config.tenant_id, now_ms=now_ms()
        )
        self.apply(conv, happened)
        return message

    def customer_leave(self, conv: SimConversation) -> None:
        self.apply(conv, state.customer_leave(conv, now_ms=now_ms()))

    def user_typing(self, conv: SimConversation, author_type: str) -> None:
        """A typing indicator from the user or bot side: shown on the desk only."""
        self._notices.publish(
            {"type": "typing", "conversationId": conv.id, "authorType": author_type}
        )

    def apply(
        self, conv: SimConversation, happened: list[Happening], *, hold: bool = False
    ) -> list[QueuedEvent]:
        """Queue the webhook events of what happened, and tell watchers."""
        queued = [
            self._deliverer.enqueue(conv.id, event, hold=hold)
            for happening in happened
            for event in render(self.config.api, conv, happening)
        ]
        if happened and self._notices.watched:  # views cost work; only build them for someone
            for happening in happened:
                if isinstance(happening, MessageAdded):
                    view = message_view(happening.message)
                    notice = {"type": "message", "conversationId": conv.id, "message": view}
                    self._notices.publish(notice)
            self._notices.publish({"type": "conversation", "conversation": conversation_view(conv)})
        return queued

    async def verify_webhook(self, uri: str, version: str) -> Delivery:
        """Send WEB_HOOK_VERIFY to `uri` once; the caller judges the answer."""
        return await self._deliverer.send_once(uri, verify_event(version))

    # --- watching ---

    def _record(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        if self._notices.watched:
            self._notices.publish({"type": "delivery", "delivery": delivery_view(delivery)})
        signal, self._delivered = self._delivered, asyncio.Event()
        signal.set()
        fields = {"event_type": delivery.event_type, "conversation": delivery.conversation_id,
                  "event_id": delivery.event_id, "retry": delivery.retry}  # fmt: skip
        if delivery.ok:
            log.info("sim_delivered", extra={**fields, "status": delivery.status})
        else:
            log.warning(
                "sim_delivery_failed",
                extra={**fields, "status": delivery.status, "error": delivery.error},
            )

    def delivered(self, conversation_id: str | None = None) -> list[Delivery]:
        """The successful deliveries (one per delivered event), optionally of one conversation."""
        return [
            d
            for d in self.deliveries
            if d.ok and (conversation_id is None or d.conversation_id == conversation_id)
        ]

    async def wait_for_deliveries(
        self,
        predicate: Callable[[Delivery], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - the public API names it so
    ) -> Delivery:
        """The first delivered (2xx) event matching `predicate`, waiting up to `timeout` s."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for delivery in self.deliveries:
                        if delivery.ok and predicate(delivery):
                            return delivery
                    await self._delivered.wait()
        except TimeoutError:
            seen = [f"{d.event_type}:{d.status or d.error}" for d in self.deliveries]
            raise TimeoutError(
                f"no delivered event matched within {timeout} s; attempts so far: {seen}"
            ) from None

    async def idle(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109 - public API
        """Wait until no event is queued or in flight."""
        async with asyncio.timeout(timeout):
            await self._deliverer.wait_idle()

    def subscribe(self) -> Subscription:
        """An async iterator of change notices: {"type": "conversation" | "message" |
        "delivery" | "typing", ...}. It ends when the simulator stops."""
        return self._notices.subscribe()

    # --- keys ---

    def add_agent(self, agent_id: str, name: str) -> None:
        """List an agent in the Real-time Metrics API's agent summary before any chat."""
        self._listed_agents[agent_id] = Agent(agent_id, name)

    def agent_directory(self) -> list[Agent]:
        """Every agent the Real-time Metrics API lists: the added ones, then every agent who
        accepted a chat here (by id; the latest name wins)."""
        agents = dict(self._listed_agents)
        for conv in self.conversations.values():
            for agent in conv.agents:
                agents[agent.id] = agent
        return list(agents.values())

    @property
    def kid(self) -> str:
        return self.keys.kid

    def rotate_key(self) -> str:
        """Sign with a new RSA key from now on; returns its kid (old keys stay published)."""
        return self.keys.rotate()


@asynccontextmanager
async def running_simulator(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Simulator]:
    """A started simulator on `host:port` (0: any free port), stopped on exit."""
    sim = Simulator(config)
    await sim.start(host, port)
    try:
        yield sim
    finally:
        await sim.stop()
