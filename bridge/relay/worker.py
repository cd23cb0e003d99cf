"""The relay worker: one task per partition this process holds the lease of.

Each partition is consumed by exactly one worker at a time, across every `serve` process on one
Redis: the lease is renewed every third of its lifetime and taken over by another process when
it lapses. Entries stay in the stream until acknowledged, so a new holder simply starts from the
oldest entry left — what the dead holder had in hand included.

Every decision (share, renewal, give-back, take-over, may-I-push, hold or deliver) is a pure
function of `decisions.py`, which entries of a read batch go together as a run of one
conversation's agent messages is one of `runs.py`, and which units are worked one after
another (one sender's) rather than at the same time is one of `lanes.py`; this module carries
them out. A consumer dispatches what it reads into lanes that outlive the batch
(`pipeline.py`) and reads again while they work. The clock and sleep are injected, and
`wait_idle` tells when nothing is pending or in flight, so tests wait on a signal, not on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bridge.eightbyeight.events import ChatEvent
from bridge.errors import StoreUnavailable
from bridge.handoff import TimerChange
from bridge.ids import ConversationId, SenderId
from bridge.metrics import Metrics
from bridge.relay import decisions as d
from bridge.relay import runs
from bridge.relay.begun import Begun, Use, begun_from, fresh, started_use
from bridge.relay.config import RelayConfig
from bridge.relay.deliver import Deliverer, RunOutcome
from bridge.relay.entries import (
    Input,
    Unit,
    conversation_of,
    decode,
    is_message,
    items,
    parsed_or_decoded,
)
from bridge.relay.handed import Intake
from bridge.relay.identity import MessageIdentity, identity_of
from bridge.relay.idle import work_left
from bridge.relay.lanes import Key, LaneEnd, lane_keys, sender_key, waits
from bridge.relay.pipeline import Pipeline
from bridge.relay.rest import Rest, Ticket
from bridge.relay.senders import Senders
from bridge.store.base import Begin, Enqueued, RunAck, Store, StreamEntry

log = logging.getLogger(__name__)

# How long a consumer waits for the supervisor's renewal once it may no longer push.
_LEASE_WAIT_S = 0.05
_ERROR_PAUSE_S = 1.0  # after Redis trouble or a surprise, before the consumer tries again
# Entries a consumer has dispatched to its lanes and not finished, at most, in read batches: a
# stalled lane must not let the consumer read its whole stream into memory, and the other lanes
# keep a batch's worth of work while it waits for room for the next one.
_IN_HAND_BATCHES = 2

# The consumer task a delivery runs for (its lanes are tasks of their own).
_CONSUMER: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar(
    "relay_consumer", default=None
)


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
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._deliverer = deliverer
        self._metrics = metrics
        self._config = config
        self.owner = owner or f"relay-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0  # entries a consumer has in hand (stream or held)
        self._progress = asyncio.Event()  # set whenever a consumer or the supervisor moved on
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._valid_until: dict[int, float] = {}
        self._reported = -1  # partitions owned when last logged
        self._kicks = [asyncio.Event() for _ in range(store.partitions)]
        self._intakes: dict[int, Intake] = {}  # the running consumers' (`hand`)
        # The resting consumers, for the door to act for them without waking them (`rest.py`).
        self._resting: dict[int, Rest] = {}
        self._senders = Senders(store)
        self._timers_checked: dict[int, float] = {}  # partition -> loop time of the last look
        self._held_checked: dict[int, float] = {}  # likewise, at held ones while lanes work
        self._stopping = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._doorbell: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # the doorbell's subscription is (or was) up

    # --- lifecycle ---

    def start(self) -> None:
        self._supervisor = asyncio.create_task(self._supervise(), name="relay-supervisor")
        self._doorbell = asyncio.create_task(self.answer_bells(), name="relay-doorbell")

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Finish in-flight deliveries (up to `timeout_s`), then release the leases."""
        self._stopping.set()
        if self._doorbell is not None:
            self._doorbell.cancel()
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
        """Wake a partition's consumer now, to read its stream: something was enqueued that
        was not handed (another process's doorbell, recovery, a mapping made)."""
        intake = self._intakes.get(partition)
        if intake is not None:
            intake.must_read = True
        if 0 <= partition < len(self._kicks):
            self._kicks[partition].set()

    def hand(
        self, partition: int, enqueued: Enqueued, event: ChatEvent | None = None,
        begin: Begin | None = None,
    ) -> None:  # fmt: skip
        """An entry this process's door just appended to a partition this relay consumes: its
        consumer may work it without reading it back (`handed.py`), nor parsing it again when
        given the `event` its payload is the JSON of, nor claiming it again when the enqueue
        took the relay's first step for it (`begin`, from `plan`; `begun.py`). Wakes the
        consumer, unless the entry goes straight to its lane (`_straight`)."""
        intake = self._intakes.get(partition)
        if intake is not None:
            rest = self._resting.get(partition)
            ticket = begin.ticket if begin is not None else None
            ticket = ticket if isinstance(ticket, Ticket) else None
            if ticket is not None and ticket.same_consumer(intake):
                ticket.rest.planned -= 1  # handed: its rest may plan again
            use = self._use(intake, rest, enqueued, ticket)
            started = enqueued.started
            attempt = Use.NOTHING if use is Use.NOTHING else Use.ATTEMPT
            now = asyncio.get_running_loop().time()
            intake.offer(enqueued, event, begun_from(started, attempt, now))
            whole = begun_from(started, use, now) if use is Use.WHOLE else None
            if rest is not None and self._straight(partition, rest, whole):
                return  # in its lane already: the consumer rests on
        if 0 <= partition < len(self._kicks):
            self._kicks[partition].set()

    def plan(self, partition: int, event_id: str, event: ChatEvent) -> Begin | None:
        """The relay's first step for an agent message the door is about to enqueue, for the
        enqueue to take (`Store.enqueue_event(begin=)`), when the entry will likely go
        straight to its lane: the partition's consumer rests with nothing handed and no lane
        running (where the step's round trip is on the critical path; when lanes run, the
        relay's own steps share their writes and the door's plan cost more than it saved: +8 %
        CPU at saturation), no other plan out, the conversation's sender known. The enqueue
        takes it only when the entry comes right after what the consumer has read
        (`Begin.frontier`). None: the enqueue alone."""
        rest = self._resting.get(partition)
        if rest is None or rest.intake.waiting or rest.planned or rest.lanes.busy:
            return None
        identity = identity_of(event_id, event)
        key = self._may_act(partition, rest, event)
        cid = event.conversation_id
        sender = self._senders.cached(cid) if cid is not None else None
        if identity is None or key is None or sender is None or cid is None:
            return None
        ticket = Ticket(rest, key, rest.dispatched[key])
        rest.planned += 1
        frontier = rest.intake.settled
        return Begin(self.owner, cid, identity.digest, identity.ordinal, sender, frontier, ticket)

    def unplan(self, begin: Begin | None) -> None:
        """A plan the door made and will not hand (a duplicate, a refusal, a failure): its rest
        may plan again."""
        ticket = begin.ticket if begin is not None else None
        if isinstance(ticket, Ticket):
            ticket.rest.planned -= 1

    def _use(
        self, intake: Intake, rest: Rest | None, enqueued: Enqueued, ticket: Ticket | None
    ) -> Use:
        """How much of what the enqueue took (planned with `ticket`) the entry's delivery may
        start from, were it to go straight to its lane now."""
        if ticket is None:
            return Use.NOTHING
        return started_use(
            enqueued.started, same_consumer=ticket.same_consumer(intake),
            unread=intake.is_unread(enqueued), undisturbed=ticket.undisturbed(rest),
        )  # fmt: skip

    def owns(self, partition: int) -> bool:
        """Whether this process consumes the partition now (else an enqueue rings the bell)."""
        task = self._tasks.get(partition)
        return task is not None and not task.done()

    async def answer_bells(self) -> None:
        """Other processes' enqueues into partitions this one consumes wake them at once; the
        poll is the net under a lost bell (pub/sub delivers at most once). Runs until stopped
        (`start` runs it)."""
        while not self._stopping.is_set():
            try:
                async for partition in self._store.bells(self.listening.set):
                    if self.owns(partition):
                        self.kick(partition)
            except StoreUnavailable:
                log.warning("relay_doorbell_unavailable")
            except Exception:
                log.exception("relay_doorbell_error")
            # Real time, not the injected clock's: a broken subscription must not spin.
            await asyncio.sleep(_ERROR_PAUSE_S)

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(p for p, t in self._tasks.items() if not t.done())

    async def wait_consumers_ended(self, timeout_s: float = 30.0) -> None:
        """Until every consumer has ended on its own (its lease lost, or it may have lapsed)."""
        consumers = list(self._tasks.values())
        if consumers:
            async with asyncio.timeout(timeout_s):
                await asyncio.wait(consumers)

    # --- the idle signal ---

    async def is_idle(self) -> bool:
        """Nothing pending and nothing in flight (`idle.work_left`), and no consumer of this
        relay mid-entry."""
        if self._in_flight:
            return False
        return not await work_left(self._store, int(self._clock() * 1000)) and not self._in_flight

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Return once `is_idle` (re-checked whenever a consumer looks at its partition or
        finishes an entry); TimeoutError if that does not happen within `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._progress.clear()  # before looking: progress made while we look wakes us
                if not self._in_flight and await self.is_idle():
                    return
                await self._progress.wait()

    # --- leases ---

    async def _supervise(self) -> None:
        interval = self._config.lease_ttl_ms / 3000
        # While stopping, keep renewing until the consumers have finished what they hold: a
        # slow last push must not outlive its lease (its ack would then be refused).
        while not self._stopping.is_set() or self.owned_partitions:
            try:
                await self.renew_leases()
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

    async def renew_leases(self) -> None:
        """One supervisor round (`decisions.plan_leases`): renew what we hold up to our fair
        share, give back the rest, take free partitions up to it. Tests call it directly."""
        stopping = self._stopping.is_set()
        live = (
            1
            if stopping
            else await self._store.relay_heartbeat(self.owner, self._config.lease_ttl_ms)
        )
        plan = d.plan_leases(self.owned_partitions, self._store.partitions, live, stopping=stopping)
        for partition in plan.renew:
            await self._claim(partition)
        # Together: each may wait for its consumer's push in hand, and the renewals wait too.
        await asyncio.gather(*(self._give_back(partition) for partition in plan.give_back))
        others = [p for p in range(self._store.partitions) if p not in self.owned_partitions]
        random.shuffle(others)  # processes starting together do not all race for partition 0
        for partition in others:
            if self._stopping.is_set() or len(self.owned_partitions) >= plan.take_up_to:
                break
            await self._claim(partition)
        self._progress.set()
        if not stopping:
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
        asked_at = self._clock()
        grant = await self._store.acquire_partition(
            partition, self.owner, self._config.lease_ttl_ms
        )
        task = self._tasks.get(partition)
        action = d.on_grant(grant, task is not None and not task.done(), self._stopping.is_set())
        if grant != d.LOST:
            self._valid_until[partition] = d.push_deadline(asked_at, self._config.lease_ttl_ms)
        stale = None
        if action is d.ConsumerAction.STOP and task is not None:
            # Someone else holds it now: stop before we deliver twice.
            task.cancel()
            self._tasks.pop(partition, None)
            log.warning("relay_partition_lost", extra={"partition": partition, "owner": self.owner})
        if action is d.ConsumerAction.RESTART:
            # Our lease had lapsed and we took it again; another relay may have worked the
            # partition meanwhile, so the consumer's memory (held conversations) is stale. It
            # is not cancelled: a push it already wrote would still land in Rasa after the new
            # consumer had looked for it in the tracker, and be pushed twice. No longer the
            # partition's consumer, it ends after the units in hand; the new one starts then.
            stale = task
            log.warning(
                "relay_partition_retaken", extra={"partition": partition, "owner": self.owner}
            )
        if action in (d.ConsumerAction.START, d.ConsumerAction.RESTART):
            self._tasks[partition] = asyncio.create_task(
                self._consume(partition, after=stale), name=f"relay-p{partition}"
            )
            log.info(
                "relay_partition_acquired", extra={"partition": partition, "owner": self.owner}
            )
        if grant == d.LOST:
            self._tasks.pop(partition, None)
            self._valid_until.pop(partition, None)

    def _lease_valid(self, partition: int) -> bool:
        return d.may_push(self._clock(), self._valid_until.get(partition))

    def _still_ours(self, partition: int) -> Callable[[], bool]:
        """For a delivery of the consumer this runs under: whether it may go on (another
        attempt, the next message). Not once the lease may lapse, nor once that consumer is no
        longer the partition's (re-taken, given back): it ends after its push in hand."""
        consumer = _CONSUMER.get()
        return lambda: self._lease_valid(partition) and self._tasks.get(partition) is consumer

    async def _give_back(self, partition: int) -> None:
        """Hand a partition to another relay: stop consuming, then release the lease. An entry
        cut short is re-checked against the tracker by the next holder (its attempt count)."""
        task = self._tasks.pop(partition, None)  # the consumer's loop ends when it sees this
        if task is not None:
            # It ends after the units in hand: a push it already wrote, cut short, would land
            # after the next holder had looked for it in the tracker, and be pushed twice.
            self._kicks[partition].set()
            # Bounded: a consumer stuck in a slow push must not hold up the other leases.
            done, _ = await asyncio.wait({task}, timeout=2.0)
            if not done:
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
        await self._store.release_partition(partition, self.owner)
        log.debug("relay_partition_released", extra={"partition": partition, "owner": self.owner})

    # --- consuming one partition ---

    async def _consume(self, partition: int, after: asyncio.Task[None] | None = None) -> None:
        if after is not None:
            self._kicks[partition].set()  # an idle stale consumer sees it is stale at once
            try:
                await asyncio.wait({after})
            except asyncio.CancelledError:
                after.cancel()  # stopping: the stale one goes with the consumer that waits on it
                raise
        _CONSUMER.set(asyncio.current_task())  # its lanes' tasks inherit it
        intake = self._intakes[partition] = Intake(most=4 * self._config.batch)
        try:
            await self._turns(partition, intake)
        finally:
            if self._intakes.get(partition) is intake:
                del self._intakes[partition]

    async def _turns(self, partition: int, intake: Intake) -> None:
        held: dict[ConversationId, int] = {}
        loaded = False
        consumer = asyncio.current_task()
        kick = self._kicks[partition]

        def stopped_short() -> None:
            intake.failed()  # what it left is in the stream before the frontier: take nothing
            kick.set()  # and wake an idle consumer to recover

        lanes: Pipeline[Unit] = Pipeline(
            lambda unit: self._unit(partition, unit, held, consumer, intake),
            wake=stopped_short,
            name=f"relay-p{partition}",
            join=lambda queued, behind: self._joined(queued, behind, intake),
        )
        try:
            # Besides cancellation (which asyncio can lose on Python 3.11), the loop ends as soon
            # as this task is no longer the partition's consumer.
            while not self._stopping.is_set() and self._tasks.get(partition) is consumer:
                try:
                    if not loaded:
                        held.update(await self._store.held_conversations(partition))
                        loaded = True
                    if not await self._turn(partition, held, intake, lanes):
                        return  # lease lost
                except StoreUnavailable:
                    log.warning("relay_store_unavailable", extra={"partition": partition})
                    if not await self._after_trouble(partition, intake, lanes):
                        return
                except Exception:
                    log.exception("relay_consumer_error", extra={"partition": partition})
                    if not await self._after_trouble(partition, intake, lanes):
                        return
                finally:
                    self._progress.set()
            # The units in hand end first (each lane stops after its own); an error one raised
            # meanwhile is logged, not lost with the pipeline.
            _end, error = await lanes.settle()
            if error is not None:
                log.error("relay_consumer_error", extra={"partition": partition}, exc_info=error)
        except BaseException:
            await lanes.cancel()  # cancelled: its lanes go with it
            raise

    async def _turn(
        self, partition: int, held: dict[ConversationId, int], intake: Intake,
        lanes: Pipeline[Unit],
    ) -> bool:  # fmt: skip
        """One look at the partition: take or read what is there and dispatch it to the lanes
        (`pipeline.py`), which work it while the consumer goes on. False: the lease was lost.
        `_straight` does the take and dispatch alone for the door while the consumer rests,
        when none of the steps before it is owed: a step added here is checked there too."""
        if lanes.failed:
            end, error = await self._recover(intake, lanes)
            if error is not None:
                raise error
            return await self._after_stop(end)
        if not self._lease_valid(partition):
            await self._sleep(_LEASE_WAIT_S)  # wait for the supervisor's renewal (or its giving up)
            return True
        if held:
            if not lanes.busy:
                if not await self._drain_held(partition, held):
                    return False
            elif self._look_at_held(partition) and await self._held_due(held):
                # Released only once no lane works on a held conversation (held is rare): the
                # next turn, once every lane has ended.
                await lanes.quiet()
                return True
        if await self._fire_timers(partition):
            intake.must_read = True  # they joined the stream unhanded: read it, them with it
        batch = self._config.batch
        # Room for a whole batch, or wait for it: reads stay whole at saturation.
        if lanes.in_hand > (_IN_HAND_BATCHES - 1) * batch:
            await lanes.room((_IN_HAND_BATCHES - 1) * batch + 1)
            return True
        entries = intake.take(batch) or await self._read(partition, batch, intake, lanes)
        intake.working(entries)
        await self._dispatch(entries, held, intake, lanes)
        if len(entries) < batch and not intake.waiting and not lanes.failed:
            # The stream's end. Anything enqueued since by this process set the kick (so the
            # wait returns at once); without one, reading again would find nothing. Other
            # processes' events ring the doorbell, or wait for the poll.
            rest = Rest(held, intake, lanes, asyncio.current_task())
            await self._idle(partition, intake, rest)
        return True

    def _straight(self, partition: int, rest: Rest, whole: Begun | None = None) -> bool:
        """What the resting consumer's next turn would do with the entry just handed, done in
        the door's turn instead, when that is only to take it and dispatch it to its lane:
        waking the consumer for it costs a task step and a turn of the loop per event at a
        paced load (where nearly every entry comes alone). Only a lone handed entry, already
        parsed, provably next in the stream (`handed.take`), under `_may_act`'s conditions.
        `whole`: its delivery's start, record included, if it goes. False: nothing was done
        (the consumer is woken)."""
        intake, lanes = rest.intake, rest.lanes
        event = intake.lone_event()
        key = self._may_act(partition, rest, event) if event is not None else None
        if event is None or key is None:
            return False
        entries = intake.take(self._config.batch)
        if not entries:  # not provably next in the stream (`handed.take`): the consumer reads
            return False
        intake.working(entries)
        if whole is not None:
            intake.begin_with(entries[0].entry_id, whole)
        rest.dispatched[key] += 1
        lanes.dispatch(key, event.conversation_id, [(entries[0], event)], 1)
        return True

    def _may_act(self, partition: int, rest: Rest, event: ChatEvent) -> Key | None:
        """The lane key of the event's conversation, if the door may dispatch it for the
        resting consumer (`_straight`, `plan`): its sender is cached and the conversation in
        no other lane, and the consumer's next turn would do nothing before it: no lane stopped
        short, the lease good, nothing held, no timer due, room in hand, no read owed. None:
        it may not."""
        cid = event.conversation_id
        sender = self._senders.cached(cid) if cid is not None else None
        lanes = rest.lanes
        if (
            cid is None or sender is None or rest.held or rest.intake.must_read
            or lanes.failed or self._stopping.is_set()
            or self._tasks.get(partition) is not rest.consumer
            or not self._lease_valid(partition) or self._timers_due(partition)
            or lanes.in_hand > (_IN_HAND_BATCHES - 1) * self._config.batch
        ):  # fmt: skip
            return None
        key = sender_key(sender)
        if lanes.in_flight().get(cid, key) != key:  # in another lane (`lanes.waits`)
            return None
        return key

    async def _read(
        self, partition: int, limit: int, intake: Intake, lanes: Pipeline[Unit]
    ) -> list[StreamEntry]:
        """While lanes work, the entries up to the frontier are finished or in hand: read past
        it. With none working, every entry read is finished: from the stream's start, which
        returns the same, and what a read past the frontier could not (lower ids, should the
        stream's key ever be made anew: deleted by hand, or a failover to a replica behind)."""
        frontier = intake.frontier if lanes.busy else None
        if frontier is None:
            return await self._store.read_events(partition, limit)
        return await self._store.read_events(partition, limit, after=frontier)

    async def _dispatch(
        self, entries: list[StreamEntry], held: dict[ConversationId, int], intake: Intake,
        lanes: Pipeline[Unit],
    ) -> None:  # fmt: skip
        """Each unit of the batch to its lane, in stream order; a unit whose conversation is
        in flight in another lane first waits for that lane to end (`lanes.waits`)."""
        if not entries:
            return
        units = await self._units(entries, held, intake)
        keys = [key for key, _, _ in units]
        conversations = [conversation for _, conversation, _ in units]
        for (key, conversation, unit), wait in zip(
            units, waits(keys, conversations, lanes.in_flight()), strict=True
        ):
            if wait is not None:
                await lanes.lane_ended(wait)
            if lanes.failed:
                return  # the rest stays in the stream, read again once every lane has ended
            lanes.dispatch(key, conversation, unit, len(unit))

    async def _recover(
        self, intake: Intake, lanes: Pipeline[Unit]
    ) -> tuple[LaneEnd, Exception | None]:
        """A lane stopped short, or the consumer failed with entries maybe read and not
        dispatched: every lane ends, then the consumer reads from the stream's start again
        (what was not finished is still there, in order). What the lanes that stopped short
        came to, and the first error one raised."""
        intake.failed()
        end, error = await lanes.settle()
        intake.restarted()
        return end, error

    async def _after_stop(self, end: LaneEnd) -> bool:
        """What the consumer does once its lanes stopped short (`end`): False, it ends."""
        if end is LaneEnd.LOST:
            return False
        if end is LaneEnd.LEASE:
            await self._sleep(_LEASE_WAIT_S)  # the supervisor renews it, or gives it up
        return True

    async def _after_trouble(self, partition: int, intake: Intake, lanes: Pipeline[Unit]) -> bool:
        """After Redis trouble or a surprise: recover, then pause. False: the lease was lost."""
        end, error = await self._recover(intake, lanes)
        if error is not None:  # a lane's, besides the consumer's own
            log.error("relay_consumer_error", extra={"partition": partition}, exc_info=error)
        await self._sleep(_ERROR_PAUSE_S)
        return end is not LaneEnd.LOST

    async def _unit(
        self, partition: int, unit: Unit, held: dict[ConversationId, int],
        consumer: asyncio.Task[Any] | None, intake: Intake,
    ) -> LaneEnd:  # fmt: skip
        """A lane's next unit, only while this consumer is still the partition's and its lease
        cannot lapse mid-push. DONE: the lane goes on."""
        if self._stopping.is_set() or self._tasks.get(partition) is not consumer:
            return LaneEnd.STOPPED
        if not self._lease_valid(partition):
            return LaneEnd.LEASE
        self._in_flight += 1
        try:
            if not await self._handle_unit(partition, unit, held, intake):
                return LaneEnd.LOST
        finally:
            self._in_flight -= 1
            self._progress.set()
        return LaneEnd.DONE

    async def _fire_timers(self, partition: int) -> int:
        """Due timers join the partition stream (at most every `timer_poll_s`), so they reach
        the state machine in order with the conversation's 8x8 events: behind every entry of
        their conversation already in the stream, in hand or not, and worked in its lane after
        them. How many joined."""
        if not self._timers_due(partition):
            return 0
        self._timers_checked[partition] = asyncio.get_running_loop().time()
        return await self._store.fire_timers(partition, int(self._clock() * 1000), self.owner)

    def _timers_due(self, partition: int) -> bool:
        """Whether the partition's timers are to be looked at (every `timer_poll_s`)."""
        now = asyncio.get_running_loop().time()
        return now >= self._timers_checked.get(partition, 0.0) + self._config.timer_poll_s

    async def _idle(self, partition: int, intake: Intake, rest: Rest | None = None) -> None:
        kick = self._kicks[partition]
        if rest is not None:  # an entry handed meanwhile may go to its lane at once
            self._resting[partition] = rest
        # asyncio.timeout, not wait_for: wait_for can swallow a cancellation on Python 3.11.
        try:
            async with asyncio.timeout(self._config.poll_s):
                await kick.wait()
        except TimeoutError:
            intake.must_read = True  # the poll, the net under a lost doorbell: read the stream
        finally:
            if self._resting.get(partition) is rest:
                del self._resting[partition]
        kick.clear()

    async def _units(
        self, entries: list[StreamEntry], held: dict[ConversationId, int], intake: Intake
    ) -> list[tuple[Key, ConversationId | None, Unit]]:
        """The batch as units of work (`runs.plan_units`: runs of agent messages of one
        conversation, every other entry alone; an entry the door's enqueue began goes alone
        too, as its own start says), each with its lane key (`lanes.lane_keys`) and its
        conversation. The senders of the batch's conversations are looked up here (cached:
        the entries need them anyway); a held conversation's is not (its entries wait behind
        the held ones)."""
        parsed = intake.taken_events
        decoded = [(entry, parsed_or_decoded(entry, parsed)) for entry in entries]
        items = [
            runs.Item(conversation_of(event), is_message(event) and not intake.begun(e.entry_id))
            for e, event in decoded
        ]
        conversations = [item.conversation for item in items]
        senders = await self._senders.known({c for c in conversations if c and c not in held})
        if len(items) == 1:  # the common look at a paced load: one entry, one unit
            units: list[tuple[int, ...]] = [(0,)]
        else:
            counts = Counter(item.conversation for item in items if item.message)
            ready = {c for c, n in counts.items() if c in senders and n >= runs.MIN_RUN}
            units = runs.plan_units(items, ready)
        keys = lane_keys(units, conversations, senders, [entry.entry_id for entry in entries])
        return [
            (key, conversations[unit[0]], [decoded[i] for i in unit])
            for unit, key in zip(units, keys, strict=True)
        ]

    def _joined(self, queued: Unit, behind: Unit, intake: Intake) -> Unit | None:
        """A unit waiting in a lane and the one dispatched behind it, as one run if
        `runs.joins` allows it (messages piled up behind a stalled push go in one push). An
        entry the door's enqueue began goes alone (a run's step would claim it again)."""
        if any(intake.begun(entry.entry_id) for entry, _ in (*queued, *behind)):
            return None
        if runs.joins(items(queued), items(behind), self._config.batch):
            return [*queued, *behind]
        return None

    async def _handle_unit(
        self, partition: int, unit: Unit, held: dict[ConversationId, int], intake: Intake
    ) -> bool:
        """A run as far as it goes (`Deliverer.process_run`), then whatever it left (or a
        lone entry) one at a time, in order. A lone entry the door's enqueue began starts from
        that (`begun.py`)."""
        run = len(unit) > 1
        now = asyncio.get_running_loop().time()
        # Given once, used or not; only soon after the door's step (`begun.FRESH_S`).
        started = [fresh(intake.started(entry.entry_id), now) for entry, _ in unit]
        outcome = await self._deliver_run(partition, unit, held) if run else RunOutcome(0)
        if outcome.lost:
            return False
        for (entry, event), door in zip(unit[outcome.done :], started[outcome.done :], strict=True):
            begun = outcome.begun.get(entry.entry_id) or (None if run else door)
            if not await self._handle(partition, entry, event, held, begun):
                return False
        return True

    async def _deliver_run(
        self, partition: int, unit: Unit, held: dict[ConversationId, int]
    ) -> RunOutcome:
        events = [event for _, event in unit if isinstance(event, ChatEvent)]
        cid = events[0].conversation_id if len(events) == len(unit) else None
        # Held since the run was planned (an entry of it before the run, in another lane then,
        # found no sender): the run's entries go one at a time, behind the held ones.
        if cid is None or cid in held:
            return RunOutcome(0)
        sender = await self._senders.of(cid)
        if sender is None:  # not what a run is planned from: one at a time
            return RunOutcome(0)

        async def ack(done: list[RunAck], timers: Sequence[TimerChange]) -> bool:
            return await self._store.ack_messages(partition, self.owner, cid, done, timers)

        return await self._deliverer.process_run(
            partition, [entry for entry, _ in unit], events, sender, ack,
            still_ours=self._still_ours(partition), owner=self.owner,
        )  # fmt: skip

    async def _handle(
        self, partition: int, entry: StreamEntry, event: Input | None,
        held: dict[ConversationId, int], begun: Begun | None = None,
    ) -> bool:  # fmt: skip
        if event is None or event.conversation_id is None:
            return await self._dead_letter(partition, entry, "corrupt_payload")
        cid = event.conversation_id
        sender = None if cid in held else await self._senders.of(cid)
        route = d.route_entry(cid in held, sender is not None)
        if route is d.Route.HOLD_BEHIND:  # keep order behind what is already held
            return await self._store.hold_event(partition, cid, entry, held[cid], self.owner)
        if route is d.Route.HOLD or sender is None:
            held[cid] = d.hold_deadline(entry.accepted_ms, self._config.hold_s)
            log.info("relay_held", extra={"conversation": cid, "event_id": entry.event_id})
            return await self._store.hold_event(partition, cid, entry, held[cid], self.owner)

        async def ack(identity: MessageIdentity | None, timers: Sequence[TimerChange]) -> bool:
            # With the event id: a message's ordinal is forgotten with its entry, and the
            # webhook's claim of the event, when it waits for the delivery, is settled.
            if identity is None:
                return await self._store.ack_event(
                    partition, entry.entry_id, self.owner, entry.event_id, timers,
                    claimed=entry.claimed,
                )  # fmt: skip
            return await self._store.ack_message(
                partition, entry.entry_id, self.owner, cid, identity.digest, identity.ordinal,
                entry.event_id, timers, claimed=entry.claimed,
            )  # fmt: skip

        return await self._deliverer.process(
            partition, entry, event, sender, finish=ack,
            dead_letter=lambda reason: self._store.dead_letter(partition, entry, reason, self.owner),
            still_ours=self._still_ours(partition), owner=self.owner, begun=begun,
        )  # fmt: skip

    async def _dead_letter(self, partition: int, entry: StreamEntry, reason: str) -> bool:
        written = await self._store.dead_letter(partition, entry, reason, self.owner)
        if written:  # counted once it is there to be listed
            self._metrics.dead_letters.labels(reason).inc()
        return written

    def _look_at_held(self, partition: int) -> bool:
        """Whether to look at the held conversations while lanes work: at most every `poll_s`
        (a look may cost a read per conversation, and turns come as often as entries do)."""
        now = asyncio.get_running_loop().time()
        if now < self._held_checked.get(partition, 0.0) + self._config.poll_s:
            return False
        self._held_checked[partition] = now
        return True

    async def _held_due(self, held: dict[ConversationId, int]) -> bool:
        """Whether a held conversation can move (`_drain_held` would release or give it up)."""
        now_ms = int(self._clock() * 1000)
        for cid, deadline in list(held.items()):
            sender = await self._senders.of(cid)
            if d.held_fate(sender is not None, now_ms, deadline) is not d.HeldFate.WAIT:
                return True
        return False

    async def _drain_held(self, partition: int, held: dict[ConversationId, int]) -> bool:
        """Deliver the held events of conversations that got mapped; give up on expired ones."""
        now_ms = int(self._clock() * 1000)
        for cid, deadline in list(held.items()):
            sender = await self._senders.of(cid)
            if d.held_fate(sender is not None, now_ms, deadline) is d.HeldFate.WAIT:
                continue
            for entry in await self._store.held_events(partition, cid):
                self._in_flight += 1
                try:
                    if not await self._release_held(partition, cid, entry, sender):
                        return False
                finally:
                    self._in_flight -= 1
                    self._progress.set()
            held.pop(cid, None)
        return True

    async def _release_held(
        self, partition: int, cid: ConversationId, entry: StreamEntry, sender: SenderId | None
    ) -> bool:
        event = decode(entry)
        if sender is None or event is None:
            reason = "unknown_conversation" if sender is None else "corrupt_payload"
            log.warning(
                "relay_gave_up_held",
                extra={"conversation": cid, "event_id": entry.event_id, "reason": reason},
            )
            written = await self._dead_letter(partition, entry, reason)
            if written and sender is None:
                self._metrics.unknown_conversation.inc()
            return written

        async def unhold(identity: MessageIdentity | None, timers: Sequence[TimerChange]) -> bool:
            if identity is None:
                return await self._store.unhold_event(
                    partition, cid, entry.entry_id, self.owner, timers
                )
            return await self._store.unhold_message(
                partition, cid, entry.entry_id, self.owner, identity.digest, identity.ordinal,
                timers,
            )  # fmt: skip

        return await self._deliverer.process(
            partition, entry, event, sender, finish=unhold,
            dead_letter=lambda reason: self._store.dead_letter(partition, entry, reason, self.owner),
            still_ours=self._still_ours(partition), owner=self.owner,
        )  # fmt: skip
