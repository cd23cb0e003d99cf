"""One recovery sweep: for each live handoff (a bounded batch, taking turns), compare what 8x8
lists with what was relayed and offer what is missing to the conversation's own stream.

Exactly once, whichever path sees a message first: a message is offered through
`relay.recovery.offer_message`, so the relay's fenced consumer checks and records its identity
(bridge/relay/identity.py). A synthetic state change carries an event id named after the record
version it was read from, so two sweeps of one drift enqueue it once, and the state machine
ignores a repeated join or leave.

The horizon. A message the webhook has not brought *yet* (8x8 still retrying it) must not be
recovered: the late event would be a new occurrence to the bridge and show twice. So a missing
item is offered only once it has been missing for `horizon_s`: since 8x8 wrote it (Gateway
`createdAt`) or since a sweep first found it missing (kept in Redis, so across sweeps and
processes), whichever is earlier. A conversation with a message still inside the horizon
has its state change wait too, so that a leave never overtakes the agent's last words.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bridge.eightbyeight.client import ChatClient
from bridge.errors import NotFound, UpstreamError
from bridge.handoff import Handoff
from bridge.ids import ConversationId, SenderId
from bridge.metrics import Metrics
from bridge.recovery import scope
from bridge.relay.recovery import Offer, message_state, offer_message
from bridge.store import RedisStore, recovery_state
from bridge.store.base import MessageState, partition_of

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RecoveryConfig:
    interval_s: float = 60.0  # between periodic sweeps
    horizon_s: float = 300.0  # how long an item must have been missing before it is offered
    max_conversations: int = 50  # per sweep; the next sweep goes on from there
    calls_per_s: float = 5.0  # 8x8 calls a sweep makes, at most, per second
    # Renewed per conversation, whose three 8x8 calls take 30 s at worst (10 s budget each);
    # a crashed sweeper frees it this soon.
    lease_ms: int = 60_000
    dedupe_ttl_s: int = 86_400  # how long an offered entry's event id stays claimed
    tolerance_ms: int = 5_000  # clock skew allowed between 8x8 and the bridge


@dataclass
class SweepResult:
    swept: bool = True  # False: another process held the lease
    conversations: int = 0
    offered: int = 0  # messages and state changes enqueued
    waiting: int = 0  # missing, but inside the horizon
    due_s: float | None = None  # when the first of those leaves the horizon (clock time)
    failed: list[str] = field(default_factory=list)  # conversations 8x8 did not answer for


class Sweeper:
    def __init__(
        self,
        store: RedisStore,
        chat: ChatClient,
        metrics: Metrics,
        config: RecoveryConfig,
        *,
        kick: Callable[[int], None] = lambda partition: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.chat = chat
        self.metrics = metrics
        self.config = config
        self._kick = kick
        self._clock = clock
        self._next_call = 0.0

    async def sweep(self) -> SweepResult:
        """One sweep, unless another process is sweeping. Raises StoreUnavailable."""
        token = await recovery_state.take_lease(self.store, self.config.lease_ms)
        if token is None:
            return SweepResult(swept=False)
        result = SweepResult()
        try:
            senders = await recovery_state.next_senders(self.store, self.config.max_conversations)
            for sender in senders:
                if not await recovery_state.renew_lease(self.store, token, self.config.lease_ms):
                    log.warning("recovery_lease_lost")
                    break
                await self._one(sender, result)
        finally:
            await recovery_state.release_lease(self.store, token)
        if result.offered or result.failed:
            log.info(
                "recovery_swept",
                extra={
                    "conversations": result.conversations,
                    "offered": result.offered,
                    "waiting": result.waiting,
                    "failed": len(result.failed),
                },
            )
        return result

    async def _one(self, sender: SenderId, result: SweepResult) -> None:
        record = await self.store.load_handoff(sender)
        handoff = Handoff.from_fields(record.fields) if record else Handoff()
        cid = handoff.conversation_id
        if not handoff.active or cid is None:
            return
        result.conversations += 1
        tol = self.config.tolerance_ms
        try:
            conversation = await self._call(self.chat.get_conversation, cid)
            messages = await self._call(self.chat.list_messages, cid)
            participants = await self._call(self.chat.list_participants, cid)
        except NotFound:
            return  # gone from 8x8: the handoff's own events and timers settle it
        except UpstreamError as exc:
            log.warning(
                "recovery_conversation_failed",
                extra={"conversation": cid, "error": type(exc).__name__},
            )
            result.failed.append(cid)
            return
        waiting_before = result.waiting
        for missed in scope.agent_messages(handoff, conversation, messages, tol):
            await self._offer(missed, result)
        change = scope.state_change(handoff, conversation, participants, tol)
        if change is not None:
            await self._offer(change, result, hold=result.waiting > waiting_before)

    async def _offer(self, missed: scope.Missed, result: SweepResult, hold: bool = False) -> None:
        """Offer `missed` once it is out of the horizon; `hold`: not yet, even then (a message
        before it is still inside the horizon, and whatever comes next must follow it)."""
        cid = missed.event.conversation_id
        assert cid is not None
        if missed.identity is not None:
            state = await message_state(self.store, cid, missed.identity)
            if state is not MessageState.UNKNOWN:
                await recovery_state.forget_seen(self.store, missed.item)
                return
        now_ms = int(self._clock() * 1000)
        seen = await recovery_state.first_seen(self.store, missed.item, now_ms)
        since = min(seen, missed.written_ms) if missed.written_ms is not None else seen
        due_ms = since + int(self.config.horizon_s * 1000)
        if hold and now_ms >= due_ms:
            result.waiting += 1  # due when the held-back message is: its own due time passed
            return
        if now_ms < due_ms:
            result.waiting += 1
            due_s = due_ms / 1000
            result.due_s = due_s if result.due_s is None else min(result.due_s, due_s)
            return
        if await self._enqueue(missed):
            result.offered += 1
            self._kick(partition_of(cid, self.store.partitions))
        await recovery_state.forget_seen(self.store, missed.item)

    async def _enqueue(self, missed: scope.Missed) -> bool:
        cid = missed.event.conversation_id
        assert cid is not None
        if missed.identity is not None:
            offer = await offer_message(
                self.store, cid, missed.identity, missed.event, self.config.dedupe_ttl_s
            )
            if offer is Offer.ENQUEUED:
                self.metrics.recovered_messages.inc()
                log.info("message_recovered", extra={"conversation": cid})
            return offer is Offer.ENQUEUED
        assert missed.event_id is not None
        partition = partition_of(cid, self.store.partitions)
        payload = missed.event.to_json()
        fresh = (
            await self.store.enqueue_event(
                partition, missed.event_id, payload, self.config.dedupe_ttl_s
            )
            is not None
        )
        if fresh:
            log.info(
                "state_recovered", extra={"conversation": cid, "kind": missed.event.kind.value}
            )
        return fresh

    async def _call(self, call: Callable[[ConversationId], Awaitable[T]], cid: ConversationId) -> T:
        """One 8x8 call, spaced `1 / calls_per_s` after the previous one: a sweep's load on
        8x8 stays flat however many handoffs are live."""
        wait = self._next_call - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._next_call = time.monotonic() + 1 / self.config.calls_per_s
        return await call(cid)
