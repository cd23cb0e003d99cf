"""Delivering one accepted event: state machine step, pushes into Rasa, retries, dead letters.

At-least-once into Rasa, exactly once for the user: every push carries a marker (event id and
effect index); on any attempt after the first (a retry, or a takeover after a crash) the
tracker is searched for the marker before pushing again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bridge.eightbyeight.events import Attachment, ChatEvent
from bridge.errors import PermanentUpstreamError, RetryableUpstreamError, StoreUnavailable
from bridge.handoff import Handoff, NotifyBot, SayToUser, Step, on_event
from bridge.ids import SenderId
from bridge.metrics import Metrics
from bridge.notices import Notices
from bridge.rasa.client import RasaClient
from bridge.relay.config import RelayConfig
from bridge.store.base import HandoffRecord, Store, StreamEntry

log = logging.getLogger(__name__)

Finish = Callable[[], Awaitable[bool]]  # ack (stream) or unhold (held list); False = lease lost
DeadLetter = Callable[[str], Awaitable[bool]]


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
        rasa: RasaClient,
        metrics: Metrics,
        config: RelayConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        notices: Notices | None = None,
    ) -> None:
        self._notices = notices or Notices()
        self._store = store
        self._rasa = rasa
        self._metrics = metrics
        self._config = config
        self._clock = clock
        self._sleep = sleep

    async def process(
        self, partition: int, entry: StreamEntry, event: ChatEvent, sender: SenderId,
        finish: Finish, dead_letter: DeadLetter, still_ours: Callable[[], bool] = lambda: True,
    ) -> bool:  # fmt: skip
        """Deliver until done. True when finished (delivered or dead-lettered), False when the
        lease was lost or may have lapsed (the entry stays for the next holder)."""
        self._metrics.relay_lag.observe(max(0.0, self._clock() - entry.accepted_ms / 1000))
        while True:
            if not still_ours():
                return False
            attempt, record = await self._store.begin_attempt(partition, entry.entry_id, sender)
            try:
                await self._apply(entry, event, sender, record, check_tracker=attempt > 1)
            except PermanentUpstreamError as exc:
                return await self._give_up(dead_letter, "rejected_by_rasa", entry, exc)
            except (RetryableUpstreamError, StoreUnavailable) as exc:
                reason = self._out_of_budget(entry, attempt)
                if reason:
                    return await self._give_up(dead_letter, reason, entry, exc)
                self._metrics.relay_retries.inc()
                log.warning(
                    "relay_retry",
                    extra={"sender": sender, "event_id": entry.event_id, "attempt": attempt,
                           "error": type(exc).__name__, "status": getattr(exc, "status", None)},
                )  # fmt: skip
                await self._sleep(self._config.backoff(attempt))
                continue
            except Exception as exc:  # a bug must not kill the worker nor block the partition
                log.exception("relay_internal_error", extra={"event_id": entry.event_id})
                if attempt >= self._config.max_attempts:
                    return await self._give_up(dead_letter, "internal_error", entry, exc)
                await self._sleep(self._config.backoff(attempt))
                continue
            return await finish()

    def _out_of_budget(self, entry: StreamEntry, attempt: int) -> str | None:
        if attempt >= self._config.max_attempts:
            return "max_attempts"
        if self._clock() - entry.accepted_ms / 1000 >= self._config.max_age_s:
            return "max_age"
        return None

    async def _give_up(
        self, dead_letter: DeadLetter, reason: str, entry: StreamEntry, exc: Exception
    ) -> bool:
        log.error("relay_dead_letter", extra={"event_id": entry.event_id, "reason": reason,
                                              "error": type(exc).__name__})  # fmt: skip
        self._metrics.dead_letters.labels(reason).inc()
        return await dead_letter(reason)

    async def _apply(
        self, entry: StreamEntry, event: ChatEvent, sender: SenderId, record: HandoffRecord | None,
        *, check_tracker: bool,
    ) -> None:  # fmt: skip
        handoff = Handoff.from_fields(record.fields) if record else Handoff()
        event = await self._notices.complete(event)  # e.g. the Gateway agent's name
        step = on_event(handoff, event, int(self._clock() * 1000))
        for push in await self._notices.dress(pushes_for(step, entry.event_id), event):
            if check_tracker and await self._rasa.has_marker(sender, push.marker):
                self._metrics.relay_skipped.inc()
                continue
            await self._push(sender, push)
        await self._save(sender, handoff, record.version if record else 0, step, event)
        self._metrics.relay_outcomes.labels(step.outcome).inc()
        log.info("relay_processed", extra={"sender": sender, "event_id": entry.event_id,
                                           "conversation": event.conversation_id, "outcome": step.outcome})  # fmt: skip

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
        self, sender: SenderId, before: Handoff, version: int, step: Step, event: ChatEvent
    ) -> None:
        """Store the new state. If an action changed the record meanwhile (CAS miss), the event
        is re-applied to the fresh state; its pushes are already done and are not repeated."""
        for _ in range(5):
            if step.handoff == before:
                return
            if await self._store.save_handoff(sender, step.handoff.to_fields(), version):
                return
            record = await self._store.load_handoff(sender)
            before = Handoff.from_fields(record.fields) if record else Handoff()
            version = record.version if record else 0
            step = on_event(before, event, int(self._clock() * 1000))
        raise StoreUnavailable("handoff record kept changing; will retry")


def pushes_for(step: Step, event_id: str) -> list[Push]:
    """The Rasa calls a step's effects need, each with its own marker."""
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
