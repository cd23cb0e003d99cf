"""The relay worker: one task per partition this process holds the lease of.

Each partition is consumed by exactly one worker at a time, across every `serve` process on one
Redis: the lease is renewed every third of its lifetime and taken over by another process when
it lapses. Entries stay in the stream until acknowledged, so a new holder simply starts from the
oldest entry left — what the dead holder had in hand included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from bridge.eightbyeight.events import ChatEvent
from bridge.errors import StoreUnavailable
from bridge.ids import ConversationId, SenderId
from bridge.metrics import Metrics
from bridge.relay.config import RelayConfig
from bridge.relay.deliver import Deliverer
from bridge.store.base import Store, StreamEntry

log = logging.getLogger(__name__)

_SENDER_CACHE = 100_000  # a conversation's sender never changes, so caching it is safe
_FRESH = 1  # acquire_partition: newly taken (2 is a renewal)
# A consumer pushes only within this share of its lease's lifetime since the last renewal: if
# the supervisor stalls, the consumer stops before another relay can have taken over.
_SAFETY = 0.8


class Relay:
    """Supervises partition leases and runs one ordered consumer per owned partition."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        metrics: Metrics,
        config: RelayConfig,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._deliverer = deliverer
        self._metrics = metrics
        self._config = config
        self.owner = owner or f"relay-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._valid_until: dict[int, float] = {}
        self._reported = -1  # partitions owned when last logged
        self._kicks = [asyncio.Event() for _ in range(store.partitions)]
        self._senders: OrderedDict[str, SenderId] = OrderedDict()
        self._stopping = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None

    # --- lifecycle ---

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="relay-supervisor")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish in-flight deliveries (up to `timeout_s`), then release the leases."""
        self._stopping.set()
        for kick in self._kicks:
            kick.set()
        consumers = list(self._tasks.values())
        if consumers:
            await asyncio.wait(consumers, timeout=timeout_s)
        tasks = [t for t in (self._supervisor, *consumers) if t is not None]
        pending: set[asyncio.Task[None]] = set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=2 * self._config.lease_ttl_ms / 3000)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(StoreUnavailable):
            for partition in list(self._tasks):
                await self._store.release_partition(partition, self.owner)
            await self._store.relay_leave(self.owner)
        self._tasks.clear()
        self._metrics.partitions_owned.set(0)

    def kick(self, partition: int) -> None:
        """Wake a partition's consumer now (events enqueued by this process)."""
        if 0 <= partition < len(self._kicks):
            self._kicks[partition].set()

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(p for p, t in self._tasks.items() if not t.done())

    # --- leases ---

    async def _supervise(self) -> None:
        interval = self._config.lease_ttl_ms / 3000
        # While stopping, keep renewing until the consumers have finished what they hold: a
        # slow last push must not outlive its lease (its ack would then be refused).
        while not self._stopping.is_set() or self.owned_partitions:
            try:
                await self._renew_all()
            except StoreUnavailable:
                log.warning("relay_store_unavailable")
            except Exception:  # the supervisor must outlive any surprise
                log.exception("relay_supervisor_error")
            if self._stopping.is_set():
                await asyncio.sleep(min(interval, 0.1))  # renewing for the last deliveries
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._stopping.wait()

    async def _renew_all(self) -> None:
        """Renew what we hold, give back what exceeds our fair share, take free partitions up
        to it. The share is ceil(partitions / live relays), so a second process gets half."""
        owned = self.owned_partitions
        if self._stopping.is_set():
            for partition in owned:
                await self._claim(partition)
            return
        live = await self._store.relay_heartbeat(self.owner, self._config.lease_ttl_ms)
        share = -(-self._store.partitions // max(1, live))
        for partition in owned[:share]:  # renewals first: they must never wait behind the rest
            await self._claim(partition)
        for partition in owned[share:]:
            await self._give_back(partition)
        others = [p for p in range(self._store.partitions) if p not in owned]
        random.shuffle(others)  # processes starting together do not all race for partition 0
        for partition in others:
            if self._stopping.is_set() or len(self.owned_partitions) >= share:
                break
            await self._claim(partition)
        self._report(live)

    def _report(self, live: int) -> None:
        owned = len(self.owned_partitions)
        if owned != self._reported:
            log.info(
                "relay_partitions", extra={"owned": owned, "live_relays": live, "owner": self.owner}
            )
            self._reported = owned
        self._metrics.partitions_owned.set(owned)

    async def _claim(self, partition: int) -> None:
        task = self._tasks.get(partition)
        if self._stopping.is_set() and (task is None or task.done()):
            return  # stopping: renew only what a live consumer still works on, take nothing
        before = self._clock()
        grant = await self._store.acquire_partition(
            partition, self.owner, self._config.lease_ttl_ms
        )
        task = self._tasks.get(partition)
        if grant and task is not None and not task.done() and grant == _FRESH:
            # Our lease had lapsed and we took it again: another relay may have worked the
            # partition meanwhile, so the consumer's memory (held conversations) is stale.
            task.cancel()
            task = None
            log.warning(
                "relay_partition_retaken", extra={"partition": partition, "owner": self.owner}
            )
        if grant:
            # Safe to push until the lease could lapse, counted from before we asked for it.
            self._valid_until[partition] = before + self._config.lease_ttl_ms / 1000 * _SAFETY
        if grant and (task is None or task.done()) and not self._stopping.is_set():
            self._tasks[partition] = asyncio.create_task(
                self._consume(partition), name=f"relay-p{partition}"
            )
            log.info(
                "relay_partition_acquired", extra={"partition": partition, "owner": self.owner}
            )
        elif not grant and task is not None and not task.done():
            task.cancel()  # someone else holds it now: stop before we deliver twice
            log.warning("relay_partition_lost", extra={"partition": partition, "owner": self.owner})
        if not grant:
            self._tasks.pop(partition, None)
            self._valid_until.pop(partition, None)

    def _lease_valid(self, partition: int) -> bool:
        return self._clock() < self._valid_until.get(partition, 0.0)

    async def _give_back(self, partition: int) -> None:
        """Hand a partition to another relay: stop consuming, then release the lease. An entry
        cut short is re-checked against the tracker by the next holder (its attempt count)."""
        task = self._tasks.pop(partition, None)  # the consumer's loop ends when it sees this
        if task is not None:
            task.cancel()
            # Bounded: a consumer stuck in a slow push must not hold up the other leases.
            await asyncio.wait({task}, timeout=2.0)
        await self._store.release_partition(partition, self.owner)
        log.debug("relay_partition_released", extra={"partition": partition, "owner": self.owner})

    # --- consuming one partition ---

    async def _consume(self, partition: int) -> None:
        held: dict[ConversationId, int] = {}
        loaded = False
        # Besides cancellation (which asyncio can lose on Python 3.11), the loop ends as soon as
        # this task is no longer the partition's consumer.
        while not self._stopping.is_set() and self._tasks.get(partition) is asyncio.current_task():
            try:
                if not loaded:
                    held = await self._store.held_conversations(partition)
                    loaded = True
                if not await self._round(partition, held):
                    return  # lease lost
            except StoreUnavailable:
                log.warning("relay_store_unavailable", extra={"partition": partition})
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("relay_consumer_error", extra={"partition": partition})
                await asyncio.sleep(1.0)

    async def _round(self, partition: int, held: dict[ConversationId, int]) -> bool:
        if not self._lease_valid(partition):
            await asyncio.sleep(0.05)  # wait for the supervisor's renewal (or its giving up)
            return True
        if held and not await self._drain_held(partition, held):
            return False
        entries = await self._store.read_events(partition, self._config.batch)
        for entry in entries:
            if self._stopping.is_set() or self._tasks.get(partition) is not asyncio.current_task():
                return True
            if not self._lease_valid(partition):
                await asyncio.sleep(0.05)  # the supervisor renews it, or gives the partition up
                return True
            if not await self._handle(partition, entry, held):
                return False
        if not entries:
            await self._idle(partition)
        return True

    async def _idle(self, partition: int) -> None:
        kick = self._kicks[partition]
        # asyncio.timeout, not wait_for: wait_for can swallow a cancellation on Python 3.11.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.poll_s):
                await kick.wait()
        kick.clear()

    async def _handle(
        self, partition: int, entry: StreamEntry, held: dict[ConversationId, int]
    ) -> bool:
        event = _decode(entry)
        if event is None or event.conversation_id is None:
            self._metrics.dead_letters.labels("corrupt_payload").inc()
            return await self._store.dead_letter(partition, entry, "corrupt_payload", self.owner)
        cid = event.conversation_id
        if cid in held:  # keep order behind what is already held for this conversation
            return await self._store.hold_event(partition, cid, entry, held[cid], self.owner)
        sender = await self._sender(cid)
        if sender is None:
            held[cid] = entry.accepted_ms + int(self._config.hold_s * 1000)
            log.info("relay_held", extra={"conversation": cid, "event_id": entry.event_id})
            return await self._store.hold_event(partition, cid, entry, held[cid], self.owner)
        return await self._deliverer.process(
            partition, entry, event, sender,
            finish=lambda: self._store.ack_event(partition, entry.entry_id, self.owner),
            dead_letter=lambda reason: self._store.dead_letter(partition, entry, reason, self.owner),
            still_ours=lambda: self._lease_valid(partition),
        )  # fmt: skip

    async def _drain_held(self, partition: int, held: dict[ConversationId, int]) -> bool:
        """Deliver the held events of conversations that got mapped; give up on expired ones."""
        now_ms = int(self._clock() * 1000)
        for cid, deadline in list(held.items()):
            sender = await self._sender(cid)
            if sender is None and now_ms < deadline:
                continue
            for entry in await self._store.held_events(partition, cid):
                if not await self._release_held(partition, cid, entry, sender):
                    return False
            held.pop(cid, None)
        return True

    async def _release_held(
        self, partition: int, cid: ConversationId, entry: StreamEntry, sender: SenderId | None
    ) -> bool:
        event = _decode(entry)
        if sender is None or event is None:
            reason = "unknown_conversation" if sender is None else "corrupt_payload"
            if sender is None:
                self._metrics.unknown_conversation.inc()
            self._metrics.dead_letters.labels(reason).inc()
            log.warning(
                "relay_gave_up_held",
                extra={"conversation": cid, "event_id": entry.event_id, "reason": reason},
            )
            return await self._store.dead_letter(partition, entry, reason, self.owner)
        return await self._deliverer.process(
            partition, entry, event, sender,
            finish=lambda: self._store.unhold_event(partition, cid, entry.entry_id, self.owner),
            dead_letter=lambda reason: self._store.dead_letter(partition, entry, reason, self.owner),
            still_ours=lambda: self._lease_valid(partition),
        )  # fmt: skip

    async def _sender(self, cid: ConversationId) -> SenderId | None:
        sender = self._senders.get(cid)
        if sender is not None:
            self._senders.move_to_end(cid)
            return sender
        sender = await self._store.sender_of(cid)
        if sender is not None:
            self._senders[cid] = sender
            if len(self._senders) > _SENDER_CACHE:
                self._senders.popitem(last=False)
        return sender


def _decode(entry: StreamEntry) -> ChatEvent | None:
    try:
        return ChatEvent.from_json(entry.payload)
    except (ValueError, TypeError, KeyError):
        return None
