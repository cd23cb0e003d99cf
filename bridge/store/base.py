"""The store's interface: every piece of state the bridge keeps, behind one Protocol.

There is one implementation (`RedisStore`), used against a real Redis or, when `REDIS_URL` is
unset, against an embedded fakeredis (with Lua), so both pass the same contract suite.

Partitions: 8x8 events are appended to one of N partition streams chosen by
`partition_of(conversation_id)`. A conversation's events therefore always share a stream, and a
sender has one live conversation at a time, so per-conversation order is per-sender order. (We
partition by conversation rather than by sender so that the webhook can enqueue without first
looking the sender up, and so that events arriving before the mapping exists stay in order
behind the held ones.) Each partition's keys share a hash slot.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

from bridge.handoff import TimerChange, TimerFired
from bridge.ids import ConversationId, EventId, SenderId

# The event id of a fired timer in the partition stream (8x8's ids never take this form).
TIMER_EVENT_PREFIX = "timer:"


def partition_of(conversation_id: str, partitions: int) -> int:
    """The partition of a conversation: stable across processes and restarts."""
    return zlib.crc32(conversation_id.encode("utf-8")) % partitions


_MAX_SEQ = 2**64 - 1  # a stream id's sequence part is a 64-bit unsigned number


StreamId = tuple[int, int]


def stream_id(entry_id: str) -> StreamId:
    """A stream id ("<ms>-<seq>") as a pair that orders as Redis orders ids."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def next_stream_id(entry_id: str) -> str:
    """The smallest stream id after `entry_id` ("<ms>-<seq>"): an XRANGE starting there
    starts strictly after it, on any Redis version (the "(" prefix needs 6.2)."""
    ms, seq = stream_id(entry_id)
    if seq >= _MAX_SEQ:
        return f"{ms + 1}-0"
    return f"{ms}-{seq + 1}"


class Claim(StrEnum):
    """What the webhook's claim of an 8x8 event id found (see `Store.claim_event`)."""

    NEW = "new"  # first seen now
    PENDING = "pending"  # seen with this body, not delivered yet: redo the (idempotent) enqueue
    DONE = "done"  # seen with this body and fully accepted: a duplicate
    CONFLICT = "conflict"  # seen with another body: a signature reused on a forged body


class ClaimResult(NamedTuple):
    state: Claim
    at_ms: int  # the store's clock when the claim was read: `enqueue_event`'s `claimed_ms`


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One accepted 8x8 event waiting in a partition stream (or held, or dead-lettered)."""

    entry_id: str  # the stream id, "<ms>-<seq>": also when the event was accepted
    event_id: EventId
    payload: str  # ChatEvent.to_json()
    # Enqueued by the webhook behind a pending claim (stream entries only: a Cluster's two
    # steps, or a claim an earlier version left pending): the claim is settled, and the
    # enqueued marker let go, when it is delivered.
    claimed: bool = False

    @property
    def accepted_ms(self) -> int:
        return int(self.entry_id.split("-", 1)[0])


@dataclass(frozen=True, slots=True)
class Enqueued:
    """An entry `enqueue_event` just appended, and the id of the stream's last entry before it
    ("" when the stream had none): a consumer that has read that entry, or any later one, has
    read everything that comes before this one."""

    entry: StreamEntry
    after: str
    # The relay's first step for the entry, when the enqueue was asked to take it (`Begin`).
    started: Started | None = None


class Admitted(NamedTuple):
    """What the door's `admit_event` did: its claim's finding, and the entry appended (None
    when nothing was: the claim said done or conflict, or the event is in the stream already)."""

    claim: Claim
    enqueued: Enqueued | None


@dataclass(frozen=True, slots=True)
class Begin:
    """The relay's first step for an agent message (`claim_and_begin`), asked of
    `enqueue_event` for the entry it appends: when the door hands the entry to its own resting
    consumer, the enqueue and that step go in one round trip. Fenced by `owner`'s partition
    lease like the relay's own. Taken only when the new entry comes right after what the
    consumer has read (the stream's last entry before it is `frontier` or older, or there is
    none): an agent message's identity is claimed in stream order (bridge/relay/identity.py),
    and an entry before it that the consumer has not read yet would claim after it.
    `ticket` is the asker's own (opaque to the store)."""

    owner: str
    conversation: ConversationId
    digest: str
    ordinal: int  # as for `claim_message`
    sender: SenderId  # whose record is read with the step
    # The consumer's frontier ("<ms>-<seq>"): every entry up to it is read and finished or in
    # hand. "": none (the step is taken only when the stream had nothing before the entry).
    frontier: str = ""
    ticket: object = None


@dataclass(frozen=True, slots=True)
class Started:
    """What the relay's first step (`claim_and_begin`) found for the entry `enqueue_event`
    appended: the message's ordinal, whose it is, the attempts counted (0 unless MINE) and the
    sender's record, read in the same round trip (`record_read`: False when that read
    failed, though the step did not)."""

    ordinal: int
    claim: MessageClaim
    attempts: int
    record: HandoffRecord | None
    record_read: bool = True


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_id: str  # id in the partition's dead-letter stream
    partition: int
    entry: StreamEntry
    reason: str


class MessageState(StrEnum):
    """Where an agent message stands (bridge/relay/identity.py)."""

    UNKNOWN = "unknown"  # no entry has taken it
    OWNED = "owned"  # an entry took it: in a stream, a hold list or the dead letters
    DELIVERED = "delivered"


class MessageClaim(StrEnum):
    MINE = "mine"  # the entry may push it
    DELIVERED = "delivered"  # delivered already: skip
    OTHER = "other"  # another entry owns it: skip
    LOST = "lost"  # the caller no longer holds the partition's lease


@dataclass(frozen=True, slots=True)
class RunMessage:
    """One agent message of a run (consecutive messages of one conversation, taken together)."""

    entry_id: str
    event_id: EventId
    digest: str
    ordinal: int  # as for `claim_message`: 0 for a webhook event, else the listed ordinal


@dataclass(frozen=True, slots=True)
class RunClaim:
    """What `claim_and_begin_run` found for one message: as `claim_and_begin`'s first three."""

    ordinal: int
    claim: MessageClaim
    attempts: int  # 0 unless the claim is MINE


class RunAck(NamedTuple):
    """A delivered message of a run, for `ack_messages`."""

    entry_id: str
    digest: str
    ordinal: int
    event_id: EventId | None = None  # the entry's: the ordinal it took is forgotten with it
    claimed: bool = False  # its webhook claim waits for the delivery: settled, marker let go


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    """A sender's handoff state as stored: flat string fields plus a version for CAS."""

    fields: dict[str, str]
    version: int


class Store(Protocol):
    """All state. Methods raise `StoreUnavailable` when the backend cannot be reached."""

    partitions: int

    async def ping(self) -> None: ...
    async def close(self) -> None: ...

    # --- sender <-> conversation mapping, and the sender's handoff record ---
    async def link(self, sender: SenderId, conversation: ConversationId) -> None:
        """Map both directions: the conversation -> sender key, then the sender's record gets
        `conversation_id` set (the commit; see `RedisStore.link` for why a crash in between is
        safe). A conversation maps to one sender for life."""
        ...

    async def sender_of(self, conversation: ConversationId) -> SenderId | None:
        """The sender a conversation belongs to, if the link is complete in both directions."""
        ...

    async def load_handoff(self, sender: SenderId) -> HandoffRecord | None: ...

    async def save_handoff(
        self, sender: SenderId, fields: dict[str, str], expected_version: int
    ) -> bool:
        """Compare-and-set: replace the record's fields (keeping `conversation_id` unless given)
        if its version is `expected_version` (0 = no record yet). True when written."""
        ...

    # --- per-sender lease: one conversation creation at a time ---
    async def acquire_sender_lease(self, sender: SenderId, ttl_ms: int) -> str | None:
        """A token if the lease was free, else None."""
        ...

    async def release_sender_lease(self, sender: SenderId, token: str) -> None:
        """Release only if `token` still holds it."""
        ...

    # --- the webhook door: claim the event id, then enqueue, then settle ---
    async def claim_event(
        self, event_id: EventId, body_sha256: str, *, settled: bool
    ) -> ClaimResult:
        """Claim an 8x8 event id for the whole deployment, remembering the body's hash, for
        the store's EVENT_DEDUPE_TTL_S (the relay's settle must find it by the same). With
        `settled`, a new claim is done at once (an event that is not enqueued). A pending claim
        is settled by the delivery (`ack_event` with the event id)."""
        ...

    async def settle_event(self, event_id: EventId) -> None:
        """Mark a pending claim done (its event was delivered)."""
        ...

    async def enqueue_event(
        self, partition: int, event_id: EventId, payload: str, dedupe_ttl_s: int,
        claimed_ms: int | None = None, *, ring: bool = False, begin: Begin | None = None,
    ) -> Enqueued | None:  # fmt: skip
        """Append to the partition stream unless this event id is in it already (None, and
        nothing written): the claim's second step, safe to redo. With `claimed_ms` (the claim's
        `at_ms`), raises `StaleClaim` (nothing written) when the enqueue comes more than
        `keys.MAX_CLAIM_TO_ENQUEUE_MS` after the claim was read. `ring`: when appended, ring
        the relays' doorbell for the partition (`bells`): another process consumes it.
        `begin`: when appended right after the consumer's frontier (`Begin`), take the relay's
        first step for it too (`Enqueued.started`; None when not taken), as `claim_and_begin`
        would with the new entry's id."""
        ...

    async def admit_event(
        self, partition: int, event_id: EventId, body_sha256: str, payload: str,
        dedupe_ttl_s: int, *, ring: bool = False, begin: Begin | None = None,
    ) -> Admitted:  # fmt: skip
        """The door's two steps for an event to relay: `claim_event` (pending) and, unless the
        claim says done or conflict, `enqueue_event` with the claim's time, `ring` and `begin`.
        Raises what they raise. As `admit_in_steps` where the claim and the partition live
        apart (a Cluster). Where one server holds both, one atomic step, in which a new claim
        is done at once and its entry is not `claimed`: nothing can come between the claim and
        the append, so there is no marker to guard a redo and nothing for the delivery to
        settle (a pending claim an earlier version left is enqueued as in two steps)."""
        ...

    def bells(self, subscribed: Callable[[], None] = ...) -> AsyncIterator[int]:
        """Partitions rung by enqueues (at most once each, while subscribed), until cancelled;
        `subscribed` is called once the subscription is up."""
        ...

    # --- the relay: one lease holder per partition, fenced by `owner` ---
    async def acquire_partition(self, partition: int, owner: str, ttl_ms: int) -> int:
        """Take the partition's lease if free (1), or renew it if `owner` holds it (2); 0 when
        another owner holds it. A 1 for a partition the caller thought it held means its lease
        had lapsed in between: whatever it had in memory for that partition is stale."""
        ...

    async def release_partition(self, partition: int, owner: str) -> None: ...

    async def relay_heartbeat(self, owner: str, ttl_ms: int) -> int:
        """Say this relay is alive for `ttl_ms`; returns how many relays are alive."""
        ...

    async def relay_leave(self, owner: str) -> None:
        """This relay stops: the others count it out at once."""
        ...

    async def read_events(
        self, partition: int, count: int, after: str | None = None
    ) -> list[StreamEntry]:
        """The oldest `count` entries still in the stream (not yet acknowledged); with `after`
        (an entry id), the oldest of those newer than that entry, whether it is still there."""
        ...

    async def ack_event(
        self, partition: int, entry_id: str, owner: str, event_id: EventId | None = None,
        timers: Sequence[TimerChange] = (), *, claimed: bool = False,
    ) -> bool:  # fmt: skip
        """Remove a delivered entry, if `owner` still holds the lease. False otherwise. With the
        entry's event id and `claimed` (the entry's: the webhook's claim of the event waits for
        the delivery): its claim is settled first, then its enqueued marker is let go (kept
        keys.ENQUEUED_AFTER_DELIVERY_MS). `timers`: what the
        delivery did to the timers, in order, stored in the same round trip: each `TimerFired`
        armed (as `arm_timer`), each `DisarmTimer` disarmed (as `disarm_timer`). Every step
        that finishes entries (the acks and unholds below) takes `timers` the same way."""
        ...

    async def note_attempt(self, partition: int, entry_id: str) -> int:
        """Count one more delivery attempt of an entry; returns the count so far."""
        ...

    async def begin_attempt(
        self, partition: int, entry_id: str, sender: SenderId
    ) -> tuple[int, HandoffRecord | None]:
        """`note_attempt` and `load_handoff` in one round trip (the relay's hot path)."""
        ...

    async def dead_letter(
        self, partition: int, entry: StreamEntry, reason: str, owner: str
    ) -> bool:
        """Move an entry (from the stream, or from a hold list) to the partition's dead letters,
        if `owner` holds the lease."""
        ...

    async def list_dead_letters(self, count: int = 100) -> list[DeadLetter]:
        """Dead letters of every partition, oldest first within a partition."""
        ...

    async def replay_dead_letter(self, partition: int, dead_id: str) -> bool:
        """Put a dead letter back at the end of its partition stream. False if unknown."""
        ...

    # --- events for conversations not mapped yet (8x8 can beat the create's 202) ---
    async def hold_event(
        self,
        partition: int,
        conversation: ConversationId,
        entry: StreamEntry,
        deadline_ms: int,
        owner: str,
    ) -> bool:
        """Move an entry from the stream to the conversation's hold list (kept in order), if
        `owner` holds the lease. The conversation's deadline is set by its first held entry."""
        ...

    async def held_conversations(self, partition: int) -> dict[ConversationId, int]:
        """Conversations with held events, and their deadlines (epoch ms)."""
        ...

    async def held_events(
        self, partition: int, conversation: ConversationId
    ) -> list[StreamEntry]: ...

    async def unhold_event(
        self, partition: int, conversation: ConversationId, entry_id: str, owner: str,
        timers: Sequence[TimerChange] = (),
    ) -> bool:  # fmt: skip
        """Drop one held entry (delivered, or given up), if `owner` holds the lease; the
        conversation leaves the held set with its last entry."""
        ...

    # --- timers: armed per partition, fired into the partition stream (ordered with 8x8's) ---
    async def arm_timer(self, partition: int, timer: TimerFired) -> None:
        """Keep `timer` until its due time. One per kind and handoff: arming the same kind of
        the same handoff again moves it to the new due time (bridge/store/timers.py)."""
        ...

    async def disarm_timer(self, partition: int, timer: TimerFired) -> None:
        """Forget the arming `timer` (its kind and handoff), if it is still at `timer.due_ms`:
        a later arming moved it, and stays. Only once the record that no longer names it is
        saved: a record naming a timer nobody keeps would wait for it for ever."""
        ...

    async def fire_timers(self, partition: int, now_ms: int, owner: str, limit: int = 100) -> int:
        """Move the timers due by `now_ms` into the partition stream, as events, if `owner`
        holds the lease (one atomic step: each fires once). Returns how many fired."""
        ...

    # --- the outbox: user messages waiting for 8x8 to come back (issue 4) ---
    async def outbox_push(self, sender: SenderId, item: str) -> int:
        """Append; returns the outbox length. The sender joins the set of senders to drain."""
        ...

    async def outbox_peek(self, sender: SenderId) -> str | None: ...

    async def outbox_pop(self, sender: SenderId, item: str) -> None:
        """Remove the head if it is still `item`; the sender leaves the set when empty."""
        ...

    async def outbox_senders(self) -> list[SenderId]: ...

    # --- delivered agent messages: one identity per message (bridge/relay/identity.py) ---
    async def message_state(
        self, partition: int, conversation: ConversationId, digest: str, ordinal: int
    ) -> MessageState: ...

    async def claim_message(
        self,
        partition: int,
        conversation: ConversationId,
        owner: str,
        digest: str,
        event_id: EventId,
        ordinal: int,
    ) -> tuple[int, MessageClaim]:
        """Take the agent message (digest, ordinal) for the entry of `event_id` before pushing
        it (ordinal 0: the one this event took before, else the lowest free one), if `owner`
        holds the partition's lease. Returns the ordinal and whose it is."""
        ...

    async def claim_and_begin(
        self,
        partition: int,
        conversation: ConversationId,
        owner: str,
        digest: str,
        event_id: EventId,
        ordinal: int,
        entry_id: str,
        sender: SenderId,
    ) -> tuple[int, MessageClaim, int, HandoffRecord | None]:
        """`claim_message`, then, when the message is this entry's to deliver, `begin_attempt`
        (0 attempts otherwise): in one round trip, the relay's first step per agent message."""
        ...

    async def claim_and_begin_run(
        self,
        partition: int,
        conversation: ConversationId,
        owner: str,
        messages: Sequence[RunMessage],
        sender: SenderId,
    ) -> tuple[list[RunClaim], HandoffRecord | None]:
        """`claim_and_begin` for each message of a run of `conversation`, in order, in one
        fenced step, with the sender's record read in the same round trip. One `RunClaim` per
        message (all LOST, nothing written, when `owner` no longer holds the lease)."""
        ...

    async def ack_messages(
        self, partition: int, owner: str, conversation: ConversationId,
        messages: Sequence[RunAck], timers: Sequence[TimerChange] = (),
    ) -> bool:  # fmt: skip
        """`ack_message` for each message of a run of `conversation` in one fenced step: all of
        them, or none when `owner` lost the lease (False). The claims of those `claimed` are
        settled first, as `ack_event` does."""
        ...

    async def ack_message(
        self,
        partition: int,
        entry_id: str,
        owner: str,
        conversation: ConversationId,
        digest: str,
        ordinal: int,
        event_id: EventId | None = None,
        timers: Sequence[TimerChange] = (),
        *,
        claimed: bool = False,
    ) -> bool:
        """`ack_event` that also records the message as delivered, in one fenced step, and
        forgets the ordinal the entry's `event_id` took. `claimed`: the webhook's claim of the
        event waits for the delivery (the entry's `claimed`), settled as `ack_event` does."""
        ...

    async def unhold_message(
        self,
        partition: int,
        conversation: ConversationId,
        entry_id: str,
        owner: str,
        digest: str,
        ordinal: int,
        timers: Sequence[TimerChange] = (),
    ) -> bool:
        """`unhold_event` that also records the message as delivered, in one fenced step."""
        ...


async def admit_in_steps(
    store: Store, partition: int, event_id: EventId, body_sha256: str, payload: str,
    dedupe_ttl_s: int, *, ring: bool = False, begin: Begin | None = None,
) -> Admitted:  # fmt: skip
    """`Store.admit_event` as two round trips: the claim, then the enqueue. A crash between the
    two leaves a pending claim and no entry, which 8x8's retry completes (the claim is found
    pending with its own body, and the enqueue redone)."""
    claim = await store.claim_event(event_id, body_sha256, settled=False)
    if claim.state is not Claim.NEW and claim.state is not Claim.PENDING:
        return Admitted(claim.state, None)
    enqueued = await store.enqueue_event(
        partition, event_id, payload, dedupe_ttl_s, claimed_ms=claim.at_ms, ring=ring, begin=begin
    )
    return Admitted(claim.state, enqueued)
