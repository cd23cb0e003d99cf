"""Delivering one accepted event: state machine step, pushes into Rasa, retries, dead letters.

At-least-once into Rasa, exactly once for the user: every push carries a marker (event id and
effect index); on any attempt after the first (a retry, or a takeover after a crash) the
tracker is searched for the marker before pushing again. An agent message carrying its identity
(bridge/relay/identity.py) that was delivered already is not pushed at all, and every agent
message is recorded as delivered by the step that acknowledges it.

A run (several agent messages of one conversation, `runs.py`) goes through `process_run`: one
store step claims every message and counts every attempt, one push carries a `bot` event per
message (each with its own marker), one script acknowledges them all. Whatever it does not
finish goes through `process` afterwards, in order, from the claims and attempts the run took,
so the markers and the tracker check above hold for it unchanged.

What to do after a failure is `decisions.after_failure`; the clock and sleep are injected, so
tests drive retries and budgets in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge import funnel
from bridge.eightbyeight.events import ChatEvent
from bridge.errors import PermanentUpstreamError, RetryableUpstreamError, StoreUnavailable
from bridge.handoff import (
    EndInteraction,
    Handoff,
    Step,
    TimerChange,
    TimerFired,
    on_event,
    on_timer,
)
from bridge.ids import ConversationId, SenderId
from bridge.metrics import CounterByLabel, Metrics
from bridge.notices import Notices
from bridge.rasa.client import BotMessage
from bridge.relay import runs
from bridge.relay.begun import Begun
from bridge.relay.config import RelayConfig
from bridge.relay.decisions import Failure, after_failure
from bridge.relay.entries import Input
from bridge.relay.identity import MessageIdentity, identity_of
from bridge.relay.pushes import Push, bot_message, pushes_for, timer_changes
from bridge.store.base import (
    HandoffRecord,
    MessageClaim,
    RunAck,
    RunClaim,
    RunMessage,
    Store,
    StreamEntry,
)

log = logging.getLogger(__name__)

# Ack (stream) or unhold (held list), recording an agent message's identity with it when one is
# given, and the delivery's timer changes (armed, disarmed) in the same round trip; False = lease
# lost.
Finish = Callable[[MessageIdentity | None, Sequence[TimerChange]], Awaitable[bool]]
# Acks a run's delivered entries, recording each message, with the timer changes; False = lease
# lost.
FinishRun = Callable[[list[RunAck], Sequence[TimerChange]], Awaitable[bool]]
DeadLetter = Callable[[str], Awaitable[bool]]
# Ends an 8x8 interaction (the service's `close_interaction`): sender, conversation, agent note.
EndsInteraction = Callable[[SenderId, ConversationId, str | None], Awaitable[None]]


class RasaPort(Protocol):
    """The slice of `RasaClient` the relay uses (tests give a recording fake of it)."""

    async def push_bot_message(
        self, sender: SenderId, text: str | None, *, marker: str,
        agent_name: str | None = None, data: dict[str, Any] | None = None,
    ) -> None: ...  # fmt: skip

    async def push_bot_messages(self, sender: SenderId, messages: Sequence[BotMessage]) -> None: ...

    async def trigger_intent(
        self, sender: SenderId, intent: str, entities: dict[str, str], *, marker: str
    ) -> None: ...

    async def has_marker(self, sender: SenderId, marker: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How far a run got: its first `done` entries were pushed and acknowledged together; the
    rest are left to the one-at-a-time path (`begun`: those whose claim the run took and never
    pushed). `lost`: the lease was lost, nothing more may be done."""

    done: int
    begun: dict[str, Begun] = field(default_factory=dict)  # by entry id
    lost: bool = False


@dataclass(frozen=True, slots=True)
class _RunPart:
    """A message a run pushes: its entry, its event (completed), its step, its identity."""

    entry: StreamEntry
    event: ChatEvent
    step: Step
    identity: MessageIdentity


class Deliverer:
    """Applies one event for one sender, retrying until Rasa accepts or the budget runs out."""

    def __init__(
        self,
        store: Store,
        rasa: RasaPort,
        metrics: Metrics,
        config: RelayConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        end_interaction: EndsInteraction | None = None,
        notices: Notices | None = None,
    ) -> None:
        self._end_interaction = end_interaction
        self._notices = notices or Notices()
        self._store = store
        self._rasa = rasa
        self._metrics = metrics
        self._config = config
        self._clock = clock
        self._sleep = sleep
        self._outcomes = CounterByLabel(metrics.relay_outcomes)
        self._deliveries = CounterByLabel(metrics.relay_deliveries)

    async def process(
        self, partition: int, entry: StreamEntry, event: Input, sender: SenderId,
        finish: Finish, dead_letter: DeadLetter, still_ours: Callable[[], bool] = lambda: True,
        *, owner: str, begun: Begun | None = None,
    ) -> bool:  # fmt: skip
        """Deliver until done. True when finished (delivered or dead-lettered), False when the
        lease was lost or may have lapsed (the entry stays for the next holder). `owner` is
        the partition lease's holder: claiming an agent message is fenced by it. `begun`: what a
        run or the door's enqueue took for this message (its claim, its attempt; see `Begun`)."""
        self._metrics.relay_lag.observe(max(0.0, self._clock() - entry.accepted_ms / 1000))
        if not still_ours():
            return False
        identity = identity_of(entry.event_id, event) if isinstance(event, ChatEvent) else None
        first: tuple[int, HandoffRecord | None] | None = None  # the first attempt, if counted
        if identity is not None and event.conversation_id is not None:
            claim, identity, first = await self._claim(
                partition, entry, event.conversation_id, sender, identity, owner, begun
            )
            if claim is MessageClaim.LOST:
                return False
            if claim is not MessageClaim.MINE:  # delivered, or another entry's to deliver
                self._metrics.relay_skipped.inc()
                self._outcomes.inc("duplicate")
                return await finish(None, ())
        if begun is not None and begun.failure is not None and begun.error is not None:
            # The run's attempt failed: judged as this entry's (the run waited the backoff).
            finished = await self._failed(
                begun.failure, begun.attempt, entry, dead_letter, begun.error, wait=False
            )
            if finished is not None:
                return finished
        while True:
            if not still_ours():
                return False
            attempt, record = first or await self._store.begin_attempt(
                partition, entry.entry_id, sender
            )
            first = None
            failed, timers = await self._attempt(
                entry, event, sender, record, check_tracker=attempt > 1
            )
            if failed is None:
                return await finish(identity, timers)
            failure, error = failed
            # No backoff once it is no longer ours: the next holder (or this relay's next
            # consumer, which waits for this one to end) retries, and would wait behind it.
            finished = await self._failed(
                failure, attempt, entry, dead_letter, error, wait=still_ours()
            )
            if finished is not None:
                return finished

    async def _attempt(
        self, entry: StreamEntry, event: Input, sender: SenderId, record: HandoffRecord | None,
        *, check_tracker: bool,
    ) -> tuple[tuple[Failure, Exception] | None, tuple[TimerChange, ...]]:  # fmt: skip
        """One attempt at the entry: what failed, if it did; else what it did to the timers (the
        finishing step stores it)."""
        try:
            timers = await self._apply(entry, event, sender, record, check_tracker=check_tracker)
        except PermanentUpstreamError as exc:
            return (Failure.PERMANENT, exc), ()
        except (RetryableUpstreamError, StoreUnavailable) as exc:
            return (Failure.RETRYABLE, exc), ()
        except Exception as exc:  # a bug must not kill the worker nor block the partition
            log.exception("relay_internal_error", extra={"event_id": entry.event_id})
            return (Failure.INTERNAL, exc), ()
        return None, timers

    async def _claim(
        self, partition: int, entry: StreamEntry, conversation: ConversationId, sender: SenderId,
        identity: MessageIdentity, owner: str, begun: Begun | None,
    ) -> tuple[MessageClaim, MessageIdentity, tuple[int, HandoffRecord | None] | None]:  # fmt: skip
        """Claim an agent message and count its first attempt, with the sender's record read in
        the same round trip. When a run or the door's enqueue took the claim already: the record
        (read with it, or now) for an attempt counted and never made; nothing when the run made
        it (the next one is begun)."""
        if begun is not None:
            mine = MessageIdentity(identity.digest, begun.ordinal)
            if begun.failure is not None:
                return MessageClaim.MINE, mine, None
            record = begun.record if begun.record_read else await self._store.load_handoff(sender)
            return MessageClaim.MINE, mine, (begun.attempt, record)
        ordinal, claim, attempt, record = await self._store.claim_and_begin(
            partition, conversation, owner, identity.digest, entry.event_id,
            identity.ordinal, entry.entry_id, sender,
        )  # fmt: skip
        return claim, MessageIdentity(identity.digest, ordinal), (attempt, record)

    async def process_run(
        self, partition: int, entries: Sequence[StreamEntry], events: Sequence[ChatEvent],
        sender: SenderId, finish: FinishRun, still_ours: Callable[[], bool], *, owner: str,
    ) -> RunOutcome:  # fmt: skip
        """Deliver a run (agent messages of one conversation, consecutive in its order: see
        `runs.py`) with one store step, one push and one ack, as far as that is safe: every
        message claimed by its entry and on its first attempt, and the state machine asking for
        nothing but words for the user. The rest, and the whole run when the push or what
        follows it fails, is left to `process` (their attempts are counted, so whatever was
        pushed is looked for in the tracker before being pushed again)."""
        started = self._clock()
        messages = _run_messages(entries, events)
        conversation = events[0].conversation_id if events else None
        if messages is None or conversation is None:
            return RunOutcome(0)  # not a run of agent messages: one at a time
        if not still_ours():
            return RunOutcome(0, lost=True)
        claims, record = await self._store.claim_and_begin_run(
            partition, conversation, owner, messages, sender
        )
        if any(c.claim is MessageClaim.LOST for c in claims):
            return RunOutcome(0, lost=True)
        parts = await self._run_parts(record, entries, events, messages, claims)
        unpushed = _begun(entries, claims, start=len(parts))
        if not parts:
            return RunOutcome(0, unpushed)
        if not still_ours():
            return RunOutcome(0, lost=True)
        failed, timers = await self._push_run(sender, parts, record, still_ours)
        if failed is not None:
            return RunOutcome(0, {**_judged(parts, *failed), **unpushed})
        for part in parts:
            self._metrics.relay_lag.observe(max(0.0, started - part.entry.accepted_ms / 1000))
            self._processed(sender, part.entry, part.event, part.step, run=len(parts))
        if not await finish([_acked(p) for p in parts], timers):
            return RunOutcome(0, lost=True)
        return RunOutcome(len(parts), unpushed)

    async def _run_parts(
        self, record: HandoffRecord | None, entries: Sequence[StreamEntry],
        events: Sequence[ChatEvent], messages: Sequence[RunMessage], claims: Sequence[RunClaim],
    ) -> list[_RunPart]:  # fmt: skip
        """The run's leading messages it may push: their entry's own, on a first attempt, and
        only words for the user (`runs.say_only_prefix`), each with its step."""
        handoff = Handoff.from_fields(record.fields) if record else Handoff()
        completed = [await self._notices.complete(event) for event in events[: _fresh(claims)]]
        now_ms = int(self._clock() * 1000)
        steps = runs.say_only_prefix(handoff, completed, now_ms, self._config.timing)
        return [
            _RunPart(entry, event, step, MessageIdentity(message.digest, claim.ordinal))
            for entry, event, step, message, claim in zip(
                entries, completed, steps, messages, claims, strict=False
            )
        ]

    async def _push_run(
        self, sender: SenderId, parts: Sequence[_RunPart], record: HandoffRecord | None,
        still_ours: Callable[[], bool],
    ) -> tuple[tuple[Failure, Exception] | None, tuple[TimerChange, ...]]:  # fmt: skip
        """One push of every message of the run, then the record they changed, saved once; the
        timer changes (stored by the run's ack), or the failure when any of it failed (the
        run then goes one at a time; a retryable failure waits the first backoff here, once for
        the whole run, unless the partition is no longer ours: as in `process`)."""
        pushes: list[Push] = []
        for part in parts:
            pushes += await self._notices.dress(
                pushes_for(part.step, part.entry.event_id), part.event
            )
        try:
            await self._rasa.push_bot_messages(sender, [bot_message(p) for p in pushes])
            self._deliveries.inc("message", len(pushes))
            for part in parts:
                await self._after_pushes(sender, part.step)
            before = Handoff.from_fields(record.fields) if record else Handoff()
            version = record.version if record else 0
            steps, events = [p.step for p in parts], [p.event for p in parts]
            saved = await self._save_steps(sender, before, version, steps, events)
        except PermanentUpstreamError as exc:
            return (Failure.PERMANENT, exc), ()
        except (RetryableUpstreamError, StoreUnavailable) as exc:
            if still_ours():
                await self._sleep(self._config.backoff(1))
            return (Failure.RETRYABLE, exc), ()
        except Exception as exc:  # a bug must not kill the worker nor block the partition
            log.exception("relay_internal_error", extra={"event_id": parts[0].entry.event_id})
            return (Failure.INTERNAL, exc), ()
        return None, timer_changes(saved)

    async def _failed(
        self, failure: Failure, attempt: int, entry: StreamEntry, dead_letter: DeadLetter,
        exc: Exception, *, wait: bool = True,
    ) -> bool | None:  # fmt: skip
        """Dead-letter the entry (the dead letter's answer: False when the lease was lost), or
        wait out the backoff (unless waited already) and answer None: try again."""
        decision = after_failure(
            failure, attempt, self._clock() - entry.accepted_ms / 1000,
            max_attempts=self._config.max_attempts, max_age_s=self._config.max_age_s,
            backoff_s=self._config.backoff(attempt),
        )  # fmt: skip
        if decision.dead_letter is not None:
            return await self._give_up(dead_letter, decision.dead_letter, entry, exc)
        if failure is not Failure.INTERNAL:
            self._metrics.relay_retries.inc()
            log.warning(
                "relay_retry",
                extra={"event_id": entry.event_id, "attempt": attempt,
                       "error": type(exc).__name__, "status": getattr(exc, "status", None)},
            )  # fmt: skip
        if wait:
            await self._sleep(decision.retry_in_s)
        return None

    async def _give_up(
        self, dead_letter: DeadLetter, reason: str, entry: StreamEntry, exc: Exception
    ) -> bool:
        log.error("relay_dead_letter", extra={"event_id": entry.event_id, "reason": reason,
                                              "error": type(exc).__name__})  # fmt: skip
        written = await dead_letter(reason)
        if written:  # counted once it is there to be listed: whoever sees the count sees it
            self._metrics.dead_letters.labels(reason).inc()
        return written

    async def _apply(
        self, entry: StreamEntry, event: Input, sender: SenderId, record: HandoffRecord | None,
        *, check_tracker: bool,
    ) -> tuple[TimerChange, ...]:  # fmt: skip
        """Push what the event's step asks for and save the record; its timer changes."""
        handoff = Handoff.from_fields(record.fields) if record else Handoff()
        if isinstance(event, ChatEvent):
            event = await self._notices.complete(event)  # e.g. the Gateway agent's name
        step = self._step(handoff, event)
        pushes = pushes_for(step, entry.event_id)
        if isinstance(event, ChatEvent):
            pushes = await self._notices.dress(pushes, event)
        else:
            pushes = await self._notices.dress_timer(pushes, handoff)
        for push in pushes:
            if check_tracker and await self._rasa.has_marker(sender, push.marker):
                self._metrics.relay_skipped.inc()
                continue
            await self._push(sender, push)
        await self._after_pushes(sender, step)
        saved = await self._save_steps(
            sender, handoff, record.version if record else 0, [step], [event]
        )
        self._processed(sender, entry, event, step)
        return (*(named_armings(handoff, event) if check_tracker else ()), *timer_changes(saved))

    def _processed(
        self, sender: SenderId, entry: StreamEntry, event: Input, step: Step, run: int = 1
    ) -> None:
        """The event's metric and its one INFO line (`run`: how many went in its push)."""
        self._outcomes.inc(step.outcome)
        log.info("relay_processed", extra={"sender": sender, "event_id": entry.event_id,
                                           "conversation": event.conversation_id,
                                           "outcome": step.outcome, "run": run})  # fmt: skip

    def _step(self, handoff: Handoff, event: Input) -> Step:
        now_ms = int(self._clock() * 1000)
        if isinstance(event, TimerFired):
            return on_timer(handoff, event, now_ms, self._config.timing)
        return on_event(handoff, event, now_ms, self._config.timing)

    async def _after_pushes(self, sender: SenderId, step: Step) -> None:
        """The interaction's end, after the user was told: safe to repeat on a retry (a second
        leave is refused). Timers are not armed here: the step that finishes the entry arms
        those of the saved state, in its round trip (a timer armed there after a crash before
        it is found stale when it fires, and re-arms the live one: `handoff.on_timer`)."""
        for effect in step.effects:
            if isinstance(effect, EndInteraction) and self._end_interaction is not None:
                cid = step.handoff.conversation_id
                if cid is not None:
                    await self._end_interaction(sender, cid, effect.note)

    async def _push(self, sender: SenderId, push: Push) -> None:
        if push.intent is not None:
            await self._rasa.trigger_intent(
                sender, push.intent, push.entities or {}, marker=push.marker
            )
            self._deliveries.inc("intent")
        else:
            await self._rasa.push_bot_message(
                sender, push.text, marker=push.marker, agent_name=push.agent_name, data=push.data
            )
            self._deliveries.inc("message")

    async def _save_steps(
        self, sender: SenderId, before: Handoff, version: int, steps: Sequence[Step],
        events: Sequence[Input],
    ) -> Sequence[Step]:  # fmt: skip
        """Store the state the steps of `events` left; the steps saved. If an action changed
        the record meanwhile (CAS miss), the events are re-applied to the fresh state; their
        pushes are already done and are not repeated."""
        for _ in range(5):
            last = steps[-1]
            if last.handoff == before:
                return steps
            if await self._store.save_handoff(sender, last.handoff.to_fields(), version):
                funnel.observe(self._metrics, sender, before, last, int(self._clock() * 1000))
                return steps
            record = await self._store.load_handoff(sender)
            before = Handoff.from_fields(record.fields) if record else Handoff()
            version = record.version if record else 0
            steps = self._steps(before, events)
        raise StoreUnavailable("handoff record kept changing; will retry")

    def _steps(self, handoff: Handoff, events: Sequence[Input]) -> list[Step]:
        steps: list[Step] = []
        for event in events:
            steps.append(self._step(handoff, event))
            handoff = steps[-1].handoff
        return steps


def named_armings(handoff: Handoff, event: Input) -> tuple[TimerFired, ...]:
    """The armings `handoff` names, armed again by a later attempt (before the step's own
    changes, which win): an earlier attempt may have saved the record that names them and
    failed before the step that stores them (its ack), and this attempt's step, finding the
    record changed already, arms nothing. Arming again what is armed moves nothing; the
    timer being applied has fired, and is not put back."""
    cid = handoff.conversation_id
    if cid is None:
        return ()
    named = (TimerFired(kind, cid, handoff.since_ms, due) for kind, due in handoff.timers)
    return tuple(timer for timer in named if timer != event)


def _acked(part: _RunPart) -> RunAck:
    # With the event id: the ordinal it took is forgotten with the entry, and the webhook's
    # claim of the event, when it waits for the delivery, is settled.
    entry = part.entry
    return RunAck(
        entry.entry_id, part.identity.digest, part.identity.ordinal, entry.event_id, entry.claimed
    )


def _run_messages(
    entries: Sequence[StreamEntry], events: Sequence[ChatEvent]
) -> list[RunMessage] | None:
    """The run's messages with the identities they claim; None if any is no agent message."""
    out: list[RunMessage] = []
    for entry, event in zip(entries, events, strict=True):
        identity = identity_of(entry.event_id, event)
        if identity is None:
            return None
        out.append(RunMessage(entry.entry_id, entry.event_id, identity.digest, identity.ordinal))
    return out


def _judged(parts: Sequence[_RunPart], failure: Failure, error: Exception) -> dict[str, Begun]:
    """After a failed run, how its messages start one at a time. A refusal may be one message's
    only: each is claimed and pushed again, alone, after a look in the tracker (a refusal then
    dead-letters that one). Any other failure is judged as each message's own failed first
    attempt (dead letter if that spent its budget, else the next attempt, tracker first)."""
    if failure is Failure.PERMANENT:
        return {}
    return {p.entry.entry_id: Begun(p.identity.ordinal, 1, failure, error) for p in parts}


def _fresh(claims: Sequence[RunClaim]) -> int:
    """How many leading messages of a run are their entry's to push, on a first attempt."""
    n = 0
    while n < len(claims) and claims[n].claim is MessageClaim.MINE and claims[n].attempts == 1:
        n += 1
    return n


def _begun(
    entries: Sequence[StreamEntry], claims: Sequence[RunClaim], start: int
) -> dict[str, Begun]:
    """The claims a run took for the entries from `start` on, which it does not push."""
    return {
        entry.entry_id: Begun(claim.ordinal, claim.attempts)
        for entry, claim in list(zip(entries, claims, strict=True))[start:]
        if claim.claim is MessageClaim.MINE
    }
