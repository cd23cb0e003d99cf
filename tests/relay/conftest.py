"""A relay on the embedded store with an injected clock and sleep, pushing into a recording fake
of the Rasa client (the client itself is tested over HTTP elsewhere). Tests wait on the relay's
idle signal, never on time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.errors import RetryableUpstreamError
from bridge.handoff import Escalated, Handoff, on_action
from bridge.ids import ConversationId, EventId, SenderId
from bridge.metrics import Metrics
from bridge.notices import Notices
from bridge.rasa.client import BotMessage
from bridge.relay import Deliverer, Relay, RelayConfig, worker
from bridge.store import RedisStore, open_store
from bridge.store.base import partition_of

CONFIG = RelayConfig(
    max_attempts=4,
    max_age_s=3600.0,
    hold_s=5.0,
    lease_ttl_ms=10_000,
    poll_s=0.005,  # idle consumers look for new entries this often (real time)
    backoff_base_s=0.25,
    backoff_cap_s=30.0,
)


class FakeClock:
    """The relay's clock; `sleep` records the delay and moves the clock on by it (unless
    `frozen`), yielding to the loop for a real instant."""

    def __init__(self) -> None:
        import time

        self.now = time.time()  # stream ids carry Redis's real time: start from it
        self.slept: list[float] = []
        self.frozen = False

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if not self.frozen:
            self.now += seconds
        await asyncio.sleep(0.001)


@dataclass
class Call:
    sender: str
    kind: str  # "bot" | "intent" | "lookup"
    text: str | None = None
    intent: str | None = None
    marker: str | None = None


@dataclass
class FakeRasa:
    """Records every call (each event of a multi-event push as a call of its own, `sizes` the
    events per push). `failures` are raised by the next pushes, in order (a `LANDED` entry: the
    push reaches the tracker, then the answer is lost), `refusals` by every push of a text, as
    Rasa refuses a whole call for one bad event; `on_push` runs inside each push."""

    calls: list[Call] = field(default_factory=list)
    tracker: dict[str, list[Call]] = field(default_factory=dict)
    failures: list[BaseException | str] = field(default_factory=list)
    on_push: Callable[[Call], Awaitable[None]] | None = None  # given a push's first call
    sizes: list[int] = field(default_factory=list)  # events per push, in order
    refusals: dict[str, BaseException] = field(default_factory=dict)  # by text: every push of it

    async def push_bot_message(
        self,
        sender: SenderId,
        text: str | None,
        *,
        marker: str,
        agent_name: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        await self._push(Call(sender, "bot", text=text, marker=marker))

    async def push_bot_messages(self, sender: SenderId, messages: Sequence[BotMessage]) -> None:
        """One call: a scripted failure fails all of it (a `LANDED` one lands all of it)."""
        await self._push(*[Call(sender, "bot", text=m.text, marker=m.marker) for m in messages])

    async def trigger_intent(
        self, sender: SenderId, intent: str, entities: dict[str, str], *, marker: str
    ) -> None:
        await self._push(Call(sender, "intent", intent=intent, marker=marker))

    async def has_marker(self, sender: SenderId, marker: str) -> bool:
        self.calls.append(Call(sender, "lookup", marker=marker))
        return any(c.marker == marker for c in self.tracker.get(sender, []))

    async def _push(self, *calls: Call) -> None:
        self.calls += calls
        self.sizes.append(len(calls))
        if self.on_push is not None:
            await self.on_push(calls[0])
        refused = [self.refusals[c.text] for c in calls if c.text in self.refusals]
        failure = refused[0] if refused else self.failures.pop(0) if self.failures else None
        if isinstance(failure, BaseException):
            raise failure
        self.tracker.setdefault(calls[0].sender, []).extend(calls)
        if failure == LANDED:
            raise RetryableUpstreamError("Rasa unreachable: TimeoutError")

    def timeline(self, sender: str) -> list[str]:
        """What the user saw, in order: texts and #intents."""
        return [
            c.text or "" if c.kind == "bot" else f"#{c.intent}"
            for c in self.tracker.get(sender, [])
        ]

    def pushes(self, sender: str) -> list[Call]:
        return [c for c in self.calls if c.sender == sender and c.kind != "lookup"]


LANDED = "landed"
JOINED = "#EXTERNAL_agent_joined"


@dataclass
class Rig:
    store: RedisStore
    rasa: FakeRasa
    clock: FakeClock
    metrics: Metrics
    config: RelayConfig
    relays: list[Relay] = field(default_factory=list)

    def relay(self, owner: str = "relay-a") -> Relay:
        deliverer = Deliverer(
            self.store,
            self.rasa,
            self.metrics,
            self.config,
            clock=self.clock,
            sleep=self.clock.sleep,
            notices=Notices(message_format="{text}"),  # the agent's raw words, to compare
        )
        relay = Relay(
            self.store, deliverer, self.metrics, self.config,
            owner=owner, clock=self.clock, sleep=self.clock.sleep,
        )  # fmt: skip
        self.relays.append(relay)
        return relay

    async def started(self, owner: str = "relay-a") -> Relay:
        """A relay that has run one lease round (its supervisor is not running: tests call
        `renew_leases` when time has passed)."""
        relay = self.relay(owner)
        await relay.renew_leases()
        return relay

    async def link(self, sender: str, conversation: str) -> None:
        s, c = SenderId(sender), ConversationId(conversation)
        record = await self.store.load_handoff(s)
        handoff = Handoff.from_fields(record.fields) if record else Handoff()
        step = on_action(handoff, Escalated(c, reopened=False), int(self.clock() * 1000))
        assert await self.store.save_handoff(
            s, step.handoff.to_fields(), record.version if record else 0
        )
        await self.store.link(s, c)

    async def enqueue(
        self, event: ChatEvent, event_id: str | None = None, *, claimed: bool = False
    ) -> None:
        """Into the conversation's partition, handed to the relays as the webhook's door hands
        it; `claimed`: as the webhook does it, claimed first."""
        assert event.conversation_id is not None
        partition = partition_of(event.conversation_id, self.store.partitions)
        eid = EventId(event_id or uuid.uuid4().hex)
        at_ms = None
        if claimed:
            at_ms = (await self.store.claim_event(eid, "body", settled=False)).at_ms
        # As the webhook's door does: the relay's first step taken with the enqueue when a
        # relay's resting consumer would take the entry straight (`Relay.plan`), then handed
        # (to every relay: only the one that planned it may use the step), the consumer woken.
        plans = (relay.plan(partition, eid, event) for relay in self.relays)
        begin = next((b for b in plans if b is not None), None)
        enqueued = await self.store.enqueue_event(
            partition, eid, event.to_json(), 3600, at_ms, begin=begin
        )
        assert enqueued is not None
        for relay in self.relays:
            relay.hand(partition, enqueued, event, begin)

    def kick(self, partition: int | None = None) -> None:
        for relay in self.relays:
            for p in range(self.store.partitions) if partition is None else [partition]:
                relay.kick(p)

    async def join(self, conversation: str, agent: str = "Anna") -> None:
        await self.enqueue(event(EventKind.AGENT_JOINED, conversation, agent_name=agent))

    async def say(self, conversation: str, *texts: str) -> None:
        for text in texts:
            await self.enqueue(said(conversation, text))

    async def idle(self, relay: Relay | None = None) -> None:
        await (relay or self.relays[0]).wait_idle(timeout_s=10.0)


def event(kind: EventKind, conversation: str, **kw: Any) -> ChatEvent:
    return ChatEvent(kind=kind, raw_type="TEST", conversation_id=ConversationId(conversation), **kw)


def said(conversation: str, text: str) -> ChatEvent:
    return event(EventKind.AGENT_MESSAGE, conversation, text=text, agent_name="Anna")


RigFactory = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig() -> AsyncIterator[RigFactory]:
    rigs: list[Rig] = []

    async def factory(partitions: int = 1, **config: Any) -> Rig:
        store = await open_store(None, partitions=partitions)
        rig = Rig(store, FakeRasa(), FakeClock(), Metrics(), replace(CONFIG, **config))
        rigs.append(rig)
        return rig

    yield factory
    for rig in rigs:
        for relay in rig.relays:
            await relay.stop(timeout_s=1.0)
        await rig.store.close()


def stale_sleeps(relay: Relay, partition: int = 0) -> list[float]:
    """The backoffs the relay's deliverer waits out from now on in a consumer that is no
    longer the partition's (its lease was taken again): they hold up the new one."""
    deliverer = relay._deliverer
    sleep, slept = deliverer._sleep, []

    async def recording(seconds: float) -> None:
        if relay._tasks.get(partition) is not worker._CONSUMER.get():
            slept.append(seconds)
        await sleep(seconds)

    deliverer._sleep = recording  # type: ignore[method-assign]
    return slept


def retake_lease_at(rig: Rig, relay: Relay, text: str) -> Callable[[], bool]:
    """The first push of `text` takes partition 0's lease again (the relay renews it as a new
    consumer) and then fails as retryable; the answer: whether it happened."""
    retaken = False

    async def on_push(call: Call) -> None:
        nonlocal retaken
        if call.text == text and not retaken:
            retaken = True
            assert await rig.store.redis.delete(rig.store.keys.partition_lease(0))
            await relay.renew_leases()
            raise RetryableUpstreamError("Rasa unreachable: TimeoutError")

    rig.rasa.on_push = on_push
    return lambda: retaken


async def kept_ordinals(rig: Rig, partition: int, conversation: str) -> list[str]:
    """The `e:<event id>` fields of the conversation's delivered hash: the ordinals events
    took whose entries are not acknowledged yet (an ack forgets its entry's)."""
    fields = await rig.store.redis.hkeys(rig.store.keys.delivered(partition, conversation))  # type: ignore[misc]
    names = [f.decode() if isinstance(f, bytes) else str(f) for f in fields]
    return [name for name in names if name.startswith("e:")]
