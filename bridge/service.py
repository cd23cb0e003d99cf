"""The handoff service: what the Rasa actions ask for (escalate, forward, end), done against
the store and 8x8. The only module besides the relay that drives the state machine.

Built from settings and a store, never from objects only `serve` holds, so the same service
runs in `serve` and under the stock rasa-sdk server (architecture.md, "One service").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from bridge import funnel
from bridge.eightbyeight.client import Author, ChatClient, Customer, HistoryMessage
from bridge.errors import (
    AuthError,
    NotFound,
    PermanentUpstreamError,
    RetryableUpstreamError,
    StoreUnavailable,
    UpstreamError,
)
from bridge.handoff import (
    DEFAULT_TIMING,
    ActionInput,
    ArmTimer,
    DisarmTimer,
    Escalated,
    EscalationFailed,
    Handoff,
    Timing,
    UserEnded,
    UserSpoke,
    on_action,
)
from bridge.hours import OpeningHours
from bridge.ids import ConversationId, SenderId
from bridge.metrics import Metrics
from bridge.store.base import Store, partition_of

log = logging.getLogger(__name__)

# Longer than one create's retry budget (~10 s), so a live creator never loses its lease; short
# enough that a crashed one does not block the user for long.
CREATE_LEASE_MS = 30_000
# How long a second, concurrent escalation of the same sender waits for the first one.
CONCURRENT_WAIT_S = 12.0


class Outcome(StrEnum):
    CREATED = "created"  # a new 8x8 conversation
    REOPENED = "reopened"  # a new message on the sender's existing conversation
    ALREADY_ACTIVE = "already_active"  # a handoff is under way already (or was just made)
    FAILED = "failed"  # 8x8 refused or stayed unreachable
    SENT = "sent"  # the message reached 8x8
    DELAYED = "delayed"  # 8x8 is down: the message waits in the outbox (first one)
    QUEUED_BEHIND = "queued_behind"  # earlier messages still wait: this one queues behind them
    REJECTED = "rejected"  # 8x8 refused this message; the handoff goes on
    NO_HANDOFF = "no_handoff"  # no live handoff for this sender
    ENDED = "ended"  # the user left the 8x8 interaction; the bot is back
    OUT_OF_HOURS = "out_of_hours"  # outside the opening hours: no escalation, the bot stays


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    conversation_id: ConversationId | None = None


class HandoffService:
    """Escalate, forward and end, for one sender at a time; safe under concurrency."""

    def __init__(
        self,
        store: Store,
        chat: ChatClient,
        *,
        on_linked: Callable[[ConversationId], None] = lambda cid: None,
        clock: Callable[[], float] = time.time,
        timing: Timing = DEFAULT_TIMING,
        hours: OpeningHours | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.chat = chat
        self.timing = timing  # the timers an escalation arms
        self.hours = hours  # None: always open
        self.metrics = metrics or Metrics()  # `serve` passes the one it exports
        self._on_linked = on_linked  # wakes the relay for events held before the link
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def is_open(self) -> bool:
        """Whether agents take chats now (HANDOFF_HOURS_FILE; always, when unset)."""
        return self.hours is None or self.hours.is_open(self._clock())

    async def handoff(self, sender: SenderId) -> Handoff:
        record = await self.store.load_handoff(sender)
        return Handoff.from_fields(record.fields) if record else Handoff()

    # --- escalate ---

    async def escalate(
        self,
        sender: SenderId,
        customer: Customer,
        history: Sequence[HistoryMessage],
        reopen_text: str,
        trigger: str = "asked",
        *,
        reopen_history: Sequence[HistoryMessage] = (),
    ) -> Result:
        """Open the sender's 8x8 conversation, or reopen the one they had. Concurrent calls for
        one sender create one conversation: the first takes a lease, the others wait for it.
        Outside the opening hours nothing is opened (a live handoff is still reported).
        `trigger` (asked, fallbacks, rule) labels the escalation in the metrics.

        A create carries `history` (the most recent 200 turns: 8x8's limit). A reopen posts
        `reopen_history` (the turns since the last handoff) as messages, in order, each with its
        author, then `reopen_text` as the user's if none of them was the user's."""
        current = await self.handoff(sender)
        if not current.active and not self.is_open():
            log.info("out_of_hours", extra={"sender": sender})
            return Result(Outcome.OUT_OF_HOURS, current.conversation_id)
        if current.active:
            await self._repair_link(sender, current)
            return Result(Outcome.ALREADY_ACTIVE, current.conversation_id)
        token = await self._sender_lease(sender)
        if token is None:
            current = await self.handoff(sender)
            outcome = Outcome.ALREADY_ACTIVE if current.active else Outcome.FAILED
            return Result(outcome, current.conversation_id)
        try:
            current = await self.handoff(sender)  # re-read under the lease
            if current.active:
                return Result(Outcome.ALREADY_ACTIVE, current.conversation_id)
            await self._discard_outbox(sender)
            reopen = reopen_messages(reopen_history, reopen_text)
            result = await self._open(sender, current, customer, history, reopen)
            if result.outcome in (Outcome.CREATED, Outcome.REOPENED):
                kind = "new" if result.outcome is Outcome.CREATED else "reopened"
                self.metrics.escalations.labels(trigger, kind).inc()
            return result
        finally:
            await self.store.release_sender_lease(sender, token)

    async def _sender_lease(self, sender: SenderId) -> str | None:
        """The sender's lease; waits while another escalation (or the outbox drainer) holds
        it. None when a handoff became active meanwhile, or after CONCURRENT_WAIT_S."""
        deadline = self._clock() + CONCURRENT_WAIT_S
        while (token := await self.store.acquire_sender_lease(sender, CREATE_LEASE_MS)) is None:
            if self._clock() >= deadline or (await self.handoff(sender)).active:
                return None
            await asyncio.sleep(0.1)
        return token

    async def _repair_link(self, sender: SenderId, current: Handoff) -> None:
        # A crash between recording a new conversation and linking it would leave its events
        # held and then dead-lettered: the next escalation attempt completes the link.
        cid = current.conversation_id
        if cid is not None and await self.store.sender_of(cid) is None:
            await self.store.link(sender, cid)
            log.warning("link_repaired", extra={"sender": sender, "conversation": cid})

    async def _discard_outbox(self, sender: SenderId) -> None:
        """What still waits from the handoff the user ended (texts, the leave) must not reach
        the interaction this escalation opens, nor end it: it is dropped, and logged."""
        dropped = 0
        while (item := await self.store.outbox_peek(sender)) is not None:
            await self.store.outbox_pop(sender, item)
            dropped += 1
        if dropped:
            log.warning("outbox_discarded", extra={"sender": sender, "items": dropped})

    async def _open(
        self, sender: SenderId, current: Handoff, customer: Customer,
        history: Sequence[HistoryMessage], reopen: Sequence[HistoryMessage],
    ) -> Result:  # fmt: skip
        # The record says REQUESTED *before* 8x8 can answer (the reopen message, the create's
        # early events): the relay must never see an event while the handoff still reads ended.
        try:
            cid = current.conversation_id
            if cid is not None and await self._reopen(sender, cid, reopen):
                return Result(Outcome.REOPENED, cid)
            created = await self.chat.create_conversation(customer, history)
        except UpstreamError as exc:
            log.warning("escalation_failed", extra={"sender": sender, "error": type(exc).__name__})
            await self._fail(sender, type(exc).__name__)
            return Result(Outcome.FAILED, current.conversation_id)
        await self._apply(sender, Escalated(created.conversation_id, reopened=False))
        await self.store.link(sender, created.conversation_id)  # now the relay can find the sender
        self._on_linked(created.conversation_id)
        log.info("escalated", extra={"sender": sender, "conversation": created.conversation_id})
        return Result(Outcome.CREATED, created.conversation_id)

    async def _reopen(
        self, sender: SenderId, conversation: ConversationId, messages: Sequence[HistoryMessage]
    ) -> bool:
        """A new message on an ended interaction reopens the conversation (spec §5). False when
        8x8 no longer knows it, so that a new one is created instead. If 8x8 fails after the
        first message, the rest wait in the outbox, in order (the handoff is open by then)."""
        await self._apply(sender, Escalated(conversation, reopened=True))
        first, *rest = messages
        try:
            await self.chat.send_message(conversation, first.text, author=first.author)
        except NotFound:
            log.info("conversation_gone", extra={"sender": sender, "conversation": conversation})
            return False
        for k, message in enumerate(rest):
            try:
                await self.chat.send_message(conversation, message.text, author=message.author)
            except (RetryableUpstreamError, AuthError):
                for later in rest[k:]:
                    await self.store.outbox_push(sender, outbox_text_item(conversation, later))
                log.warning(
                    "reopen_history_delayed", extra={"sender": sender, "items": len(rest) - k}
                )
                break
            except PermanentUpstreamError as exc:  # this one message (e.g. too long): skip it
                log.warning(
                    "reopen_history_refused", extra={"sender": sender, "status": exc.status}
                )
        log.info("reopened", extra={"sender": sender, "conversation": conversation})
        return True

    async def _fail(self, sender: SenderId, reason: str) -> None:
        # A failed escalation never leaves the record live (a reopen may have marked it so).
        await self._apply(sender, UserEnded())
        await self._apply(sender, EscalationFailed(reason))

    # --- forward ---

    async def forward(self, sender: SenderId, text: str) -> Result:
        """Send the user's turn to the agent. If 8x8 stays down it waits in the outbox; while the
        outbox is not empty, later turns queue behind it, so the agent sees them in order."""
        current = await self.handoff(sender)
        cid = current.conversation_id
        if not current.active or cid is None:
            return Result(Outcome.NO_HANDOFF, cid)
        item = json.dumps({"kind": "text", "conversation": cid, "text": text})
        if await self.store.outbox_peek(sender) is not None:
            await self.store.outbox_push(sender, item)
            return Result(Outcome.QUEUED_BEHIND, cid)
        try:
            await self.chat.send_message(cid, text, author="user")
        except (RetryableUpstreamError, AuthError):
            # 8x8 down, or our credentials refused (a key being rotated): keep it for later.
            await self.store.outbox_push(sender, item)
            log.warning("forward_delayed", extra={"sender": sender, "conversation": cid})
            return Result(Outcome.DELAYED, cid)
        except NotFound:
            log.warning("forward_conversation_gone", extra={"sender": sender, "conversation": cid})
            await self._apply(sender, UserEnded())
            return Result(Outcome.ENDED, cid)
        except PermanentUpstreamError as exc:
            # 8x8 refused this one message (e.g. too long): the handoff goes on.
            log.warning("forward_refused", extra={"sender": sender, "status": exc.status})
            return Result(Outcome.REJECTED, cid)
        await self._apply(sender, UserSpoke())  # the silence timers measure from this turn
        return Result(Outcome.SENT, cid)

    # --- end ---

    async def end(self, sender: SenderId) -> Result:
        """The user ends the chat: leave the 8x8 interaction (later, in order, if 8x8 is down)
        and hand the user back to the bot at once."""
        current = await self.handoff(sender)
        cid = current.conversation_id
        if not current.active or cid is None:
            return Result(Outcome.NO_HANDOFF, cid)
        # Ended before 8x8 hears of it: the leave's own events (Chat API v2 answers a customer
        # leave with AGENT_LEFT) must find the handoff over, or the user hears the agent left.
        await self._apply(sender, UserEnded())
        await self._leave(sender, cid)
        return Result(Outcome.ENDED, cid)

    async def close_interaction(
        self, sender: SenderId, cid: ConversationId, note: str | None = None
    ) -> None:
        """The bridge ends the interaction itself (a timer: nobody came, the user went silent),
        the handoff being over already: `note` to the agent first, when given, then the leave."""
        if note:
            try:
                await self.chat.send_message(cid, note, author="bot")
            except UpstreamError as exc:  # a courtesy: the leave matters, not the note
                log.info("close_note_failed", extra={"sender": sender, "error": type(exc).__name__})
        await self._leave(sender, cid)
        log.info("interaction_closed", extra={"sender": sender, "conversation": cid})

    async def _leave(self, sender: SenderId, cid: ConversationId) -> None:
        """Leave the 8x8 interaction now, or in order behind what waits in the outbox."""
        item = json.dumps({"kind": "leave", "conversation": cid})
        if await self.store.outbox_peek(sender) is not None:
            await self.store.outbox_push(sender, item)
            return
        try:
            await self.chat.leave(cid)
        except RetryableUpstreamError:
            await self.store.outbox_push(sender, item)
        except PermanentUpstreamError as exc:  # already gone: nothing to leave
            log.info("leave_refused", extra={"sender": sender, "error": type(exc).__name__})

    # --- the outbox, drained by `serve` ---

    async def drain_outbox(self, sender: SenderId) -> bool:
        """Send what waits for this sender, in order. True when the outbox is empty. The lease is
        taken per item (one 8x8 call, ~10 s at most, well inside it), so a long outbox never
        outlives its lease and a second drainer cannot send the same items."""
        while True:
            token = await self.store.acquire_sender_lease(sender, CREATE_LEASE_MS)
            if token is None:
                return False  # another process (or an escalation) is at it
            try:
                item = await self.store.outbox_peek(sender)
                if item is None:
                    return True
                if not await self._drain_item(sender, item):
                    return False
            finally:
                await self.store.release_sender_lease(sender, token)

    async def _drain_item(self, sender: SenderId, item: str) -> bool:
        try:
            await self._send_item(item)
        except (RetryableUpstreamError, AuthError):
            self.metrics.outbox_retries.inc()
            return False  # later, in order
        except PermanentUpstreamError as exc:
            log.error("outbox_item_refused", extra={"sender": sender, "status": exc.status})
        await self.store.outbox_pop(sender, item)
        return True

    async def _send_item(self, item: str) -> None:
        data = json.loads(item)
        cid = ConversationId(str(data["conversation"]))
        if data.get("kind") == "leave":
            await self.chat.leave(cid)
        else:
            author: Author = "bot" if data.get("author") == "bot" else "user"
            await self.chat.send_message(cid, str(data.get("text", "")), author=author)

    # --- state ---

    async def _arm(self, effects: Sequence[object]) -> None:
        # Before the save: a crash in between leaves an armed timer the record does not name
        # (stale when it fires: ignored, or it arms the record's live one again), never a
        # record waiting for a timer nobody armed.
        for effect in effects:
            if isinstance(effect, ArmTimer):
                timer = effect.timer
                partition = partition_of(timer.conversation_id, self.store.partitions)
                await self.store.arm_timer(partition, timer)

    async def _disarm(self, effects: Sequence[object]) -> None:
        # After the save: before it, a crash (or a lost race) would leave a record that names
        # a timer nobody keeps any more. A failure here costs only a stale firing (ignored), so
        # it must not fail the action whose record is saved (an escalation's link, its reopen).
        for effect in effects:
            if isinstance(effect, DisarmTimer):
                timer = effect.timer
                partition = partition_of(timer.conversation_id, self.store.partitions)
                try:
                    await self.store.disarm_timer(partition, timer)
                except StoreUnavailable:
                    log.warning(
                        "timer_disarm_failed", extra={"conversation": timer.conversation_id}
                    )

    async def _apply(self, sender: SenderId, action: ActionInput) -> Handoff:
        """Apply an action input to the sender's record, compare-and-set, retried on a race."""
        for _ in range(10):
            record = await self.store.load_handoff(sender)
            current = Handoff.from_fields(record.fields) if record else Handoff()
            step = on_action(current, action, self._now_ms(), self.timing)
            if step.handoff == current:
                return current
            await self._arm(step.effects)
            if await self.store.save_handoff(
                sender, step.handoff.to_fields(), record.version if record else 0
            ):
                funnel.observe(self.metrics, sender, current, step, self._now_ms())
                await self._disarm(step.effects)
                return step.handoff
        raise RuntimeError(f"handoff record of {sender} kept changing")


def reopen_messages(history: Sequence[HistoryMessage], fallback: str) -> list[HistoryMessage]:
    """What a reopen posts: the turns since the last handoff, and the neutral line as the user's
    when none of them is the user's ([INFERRED] 8x8 reopens on a message "on behalf of the
    user", spec §5.1.7; and the agent needs to see that the user asked)."""
    messages = [m for m in history if m.text.strip()]
    if not any(m.author == "user" for m in messages):
        messages.append(HistoryMessage("user", fallback))
    return messages


def outbox_text_item(conversation: ConversationId, message: HistoryMessage) -> str:
    return json.dumps(
        {
            "kind": "text",
            "conversation": conversation,
            "text": message.text,
            "author": message.author,
        }
    )
