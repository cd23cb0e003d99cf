"""Delivering one accepted event: state machine step, pushes into Rasa, retries, dead letters.

At-least-once into Rasa, exactly once for the user: every push carries a marker (event id and
effect index); on any attempt after the first (a retry, or a takeover after a crash) the
tracker is searched for the marker before pushing again. An agent message carrying its identity
(bridge/relay/identity.py) that was delivered already is not pushed at all, and every agent
message is recorded as delivered by the step that acknowledges it.

What to do after a failure is `decisions.after_failure`; the clock and sleep are injected, so
tests drive retries and budgets in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bridge import funnel
from bridge.eightbyeight.events import Attachment, ChatEvent
from bridge.errors import PermanentUpstreamError, RetryableUpstreamError, StoreUnavailable
from bridge.handoff import (
    ArmTimer,
    EndInteraction,
    Handoff,
    NotifyBot,
    SayToUser,
    Step,
    TimerFired,
    on_event,
    on_timer,
)
from bridge.ids import ConversationId, SenderId
from bridge.metrics import Metrics
from bridge.notices import Notices
from bridge.relay.config import RelayConfig
from bridge.relay.decisions import Failure, after_failure
from bridge.relay.identity import MessageIdentity, identity_of
from bridge.store.base import HandoffRecord, MessageClaim, Store, StreamEntry, partition_of

log = logging.getLogger(__name__)

# Ack (stream) or unhold (held list), recording an agent message's identity with it when one is
# given; False = lease lost.
Finish = Callable[[MessageIdentity | None], Awaitable[bool]]
DeadLetter = Callable[[str], Awaitable[bool]]
# Ends an 8x8 interaction (the service's `close_interaction`): sender, conversation, agent note.
EndsInteraction = Callable[[SenderId, ConversationId, str | None], Awaitable[None]]
Input = ChatEvent | TimerFired  # what the partition stream carries


class RasaPort(Protocol):
    """The slice of `RasaClient` the relay uses (tests give a recording fake of it)."""

    async def push_bot_message(
        self, sender: SenderId, text: str | None, *, marker: str,
        agent_name: str | None = None, data: dict[str, Any] | None = None,
    ) -> None: ...  # fmt: skip

    async def trigger_intent(
        self, sender: SenderId, intent: str, entities: dict[str, str], *, marker: str
    ) -> None: ...

    async def has_marker(self, sender: SenderId, marker: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Push:
    """One call into Rasa, with the marker that lets us find it in the tracker later."""

    marker: str
    intent: str | None = None
    entities: dict[str, str] | None = None
    text: str | None = None
    agent_name: str | None = None
    data: dict[str, Any] | None = None


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

    async def process(
        self, partition: int, entry: StreamEntry, event: Input, sender: SenderId,
        finish: Finish, dead_letter: DeadLetter, still_ours: Callable[[], bool] = lambda: True,
        *, owner: str,
    ) -> bool:  # fmt: skip
        """Deliver until done. True when finished (delivered or dead-lettered), False when the
        lease was lost or may have lapsed (the entry stays for the next holder). `owner` is
        the partition lease's holder: claiming an agent message is fenced by it."""
        self._metrics.relay_lag.observe(max(0.0, self._clock() - entry.accepted_ms / 1000))
        if not still_ours():
            return False
        identity = identity_of(entry.event_id, event) if isinstance(event, ChatEvent) else None
        begun: tuple[int, HandoffRecord | None] | None = None  # the first attempt, if counted
        if identity is not None and event.conversation_id is not None:
            # The claim and the first attempt's reads in one round trip.
            ordinal, claim, attempt, record = await self._store.claim_and_begin(
                partition, event.conversation_id, owner, identity.digest, entry.event_id,
                identity.ordinal, entry.entry_id, sender,
            )  # fmt: skip
            if claim is MessageClaim.LOST:
                return False
            if claim is not MessageClaim.MINE:  # delivered, or another entry's to deliver
                self._metrics.relay_skipped.inc()
                self._metrics.relay_outcomes.labels("duplicate").inc()
                return await finish(None)
            identity = MessageIdentity(identity.digest, ordinal)
            begun = attempt, record
        while True:
            if not still_ours():
                return False
            attempt, record = begun or await self._store.begin_attempt(
                partition, entry.entry_id, sender
            )
            begun = None
            failure: Failure
            error: Exception
            try:
                await self._apply(entry, event, sender, record, check_tracker=attempt > 1)
            except PermanentUpstreamError as exc:
                failure, error = Failure.PERMANENT, exc
            except (RetryableUpstreamError, StoreUnavailable) as exc:
                failure, error = Failure.RETRYABLE, exc
            except Exception as exc:  # a bug must not kill the worker nor block the partition
                log.exception("relay_internal_error", extra={"event_id": entry.event_id})
                failure, error = Failure.INTERNAL, exc
            else:
                return await finish(identity)
            finished = await self._failed(failure, attempt, entry, dead_letter, error)
            if finished is not None:
                return finished

    async def _failed(
        self, failure: Failure, attempt: int, entry: StreamEntry, dead_letter: DeadLetter,
        exc: Exception,
    ) -> bool | None:  # fmt: skip
        """Dead-letter the entry (the dead letter's answer: False when the lease was lost), or
        wait out the backoff and answer None: try again."""
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
    ) -> None:  # fmt: skip
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
        await self._save(sender, handoff, record.version if record else 0, step, event)
        self._metrics.relay_outcomes.labels(step.outcome).inc()
        log.info("relay_processed", extra={"sender": sender, "event_id": entry.event_id,
                                           "conversation": event.conversation_id, "outcome": step.outcome})  # fmt: skip

    def _step(self, handoff: Handoff, event: Input) -> Step:
        now_ms = int(self._clock() * 1000)
        if isinstance(event, TimerFired):
            return on_timer(handoff, event, now_ms, self._config.timing)
        return on_event(handoff, event, now_ms, self._config.timing)

    async def _after_pushes(self, sender: SenderId, step: Step) -> None:
        """Timers and the interaction's end, after the user was told. Both are safe to repeat
        on a retry: a re-armed timer supersedes the first arming, a second leave is refused."""
        for effect in step.effects:
            if isinstance(effect, ArmTimer):
                timer = effect.timer
                partition = partition_of(timer.conversation_id, self._store.partitions)
                await self._store.arm_timer(partition, timer)
            elif isinstance(effect, EndInteraction) and self._end_interaction is not None:
                cid = step.handoff.conversation_id
                if cid is not None:
                    await self._end_interaction(sender, cid, effect.note)

    async def _push(self, sender: SenderId, push: Push) -> None:
        if push.intent is not None:
            await self._rasa.trigger_intent(
                sender, push.intent, push.entities or {}, marker=push.marker
            )
            self._metrics.relay_deliveries.labels("intent").inc()
        else:
            await self._rasa.push_bot_message(
                sender, push.text, marker=push.marker, agent_name=push.agent_name, data=push.data
            )
            self._metrics.relay_deliveries.labels("message").inc()

    async def _save(
        self, sender: SenderId, before: Handoff, version: int, step: Step, event: Input
    ) -> None:
        """Store the new state. If an action changed the record meanwhile (CAS miss), the event
        is re-applied to the fresh state; its pushes are already done and are not repeated."""
        for _ in range(5):
            if step.handoff == before:
                return
            if await self._store.save_handoff(sender, step.handoff.to_fields(), version):
                funnel.observe(self._metrics, sender, before, step, int(self._clock() * 1000))
                return
            record = await self._store.load_handoff(sender)
            before = Handoff.from_fields(record.fields) if record else Handoff()
            version = record.version if record else 0
            step = self._step(before, event)
        raise StoreUnavailable("handoff record kept changing; will retry")


def pushes_for(step: Step, event_id: str) -> list[Push]:
    """The Rasa calls a step's effects need, each with its own marker (`event_id`: the base of
    the markers)."""
    out: list[Push] = []
    for i, effect in enumerate(step.effects):
        if isinstance(effect, NotifyBot):
            out.append(
                Push(f"{event_id}:{i}", intent=effect.intent, entities=dict(effect.entities))
            )
        elif isinstance(effect, SayToUser):
            out.extend(_message_pushes(f"{event_id}:{i}", effect))
    return out


def _message_pushes(marker: str, say: SayToUser) -> list[Push]:
    # Rasa's channels take one image or attachment per message: the first rides with the text,
    # further ones follow as messages of their own.
    attachments = list(say.attachments)
    first = Push(marker, text=say.text, agent_name=say.agent_name,
                 data=_attachment_data(attachments.pop(0)) if attachments else None)  # fmt: skip
    rest = [
        Push(f"{marker}.{k}", text=None, agent_name=say.agent_name, data=_attachment_data(a))
        for k, a in enumerate(attachments, start=1)
    ]
    return [first, *rest]


def _attachment_data(attachment: Attachment) -> dict[str, Any]:
    if attachment.type == "image":
        return {"image": attachment.url}
    return {"attachment": {"url": attachment.url, "name": attachment.name, "type": attachment.type}}
