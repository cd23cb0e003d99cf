"""The one `Store` implementation, on Redis (real, or fakeredis for the embedded store).

Every multi-key atomic step is a Lua script from `scripts.py` over keys of one hash slot (see
`keys.py`). The two places that span slots are `link` (a MULTI: atomic on a single Redis; under
Cluster a half-written link is never trusted, because `sender_of` checks both directions) and
the two indexes, of outboxes and of live handoffs (`live_index.py`), which may lag; readers
repair them.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.commands.core import AsyncScript

from bridge.errors import StoreUnavailable
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import live_index, scripts
from bridge.store.base import DeadLetter, HandoffRecord, Store, StreamEntry
from bridge.store.keys import (
    CONVERSATION_FIELD,
    DEAD_LETTER_MAX_AGE_MS,
    MAPPING_TTL_MS,
    OUTBOX_TTL_MS,
    VERSION_FIELD,
    Keys,
)

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# What "Redis cannot be reached or did not answer in time" looks like. ReadOnlyError is a
# replica answering during a failover: as transient as a dropped connection.
_UNAVAILABLE = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    ConnectionError,
    TimeoutError,
)

_TRANSIENT_REPLIES = ("OOM", "BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")

_STREAM_ID = re.compile(r"\d+-\d+")


def _guarded(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The one place where backend connection trouble becomes `StoreUnavailable`."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except _UNAVAILABLE as exc:
            # The message names the error only: redis-py's messages carry no secrets, but the
            # URL (which can) is never part of it.
            raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}: {exc}") from exc
        except rexc.ResponseError as exc:
            # Out of memory, busy with a script, loading, failing over: Redis is there but
            # cannot take writes now. Callers answer 503 / retry, as for a dropped connection.
            if str(exc).startswith(_TRANSIENT_REPLIES):
                raise StoreUnavailable(f"redis unavailable: {exc}") from exc
            raise

    return wrapper


def _text(value: bytes | str) -> str:
    # Decode consistently whether or not the client was built with decode_responses=True.
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _record(raw: dict[Any, Any] | None) -> HandoffRecord | None:
    if not raw:
        return None
    fields = {_text(k): _text(v) for k, v in raw.items()}
    version = int(fields.pop(VERSION_FIELD, "0"))
    return HandoffRecord(fields, version)


def _entry(entry_id: bytes | str, fields: dict[Any, Any]) -> StreamEntry:
    decoded = {_text(k): _text(v) for k, v in fields.items()}
    return StreamEntry(_text(entry_id), EventId(decoded["eid"]), decoded["ev"])


def serialize_held(entry: StreamEntry) -> str:
    """A held entry as stored in a hold list; the entry id leads (the scripts match on it)."""
    return json.dumps([entry.entry_id, entry.event_id, entry.payload], separators=(",", ":"))


def _deserialize_held(raw: bytes | str) -> StreamEntry:
    entry_id, event_id, payload = json.loads(_text(raw))
    return StreamEntry(str(entry_id), EventId(str(event_id)), str(payload))


class RedisStore:
    """`Store` on a redis.asyncio client (a real Redis, or a fakeredis one)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "", partitions: int = 16) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.redis = client
        self.keys = Keys(prefix)
        self.partitions = partitions
        self.dead_letter_max_age_ms = DEAD_LETTER_MAX_AGE_MS  # `serve` sets its setting here
        # Registered once; each call is EVALSHA, with a reload if the server lost the script.
        self.scripts: dict[str, AsyncScript] = {
            name: client.register_script(source) for name, source in scripts.ALL.items()
        }

    async def _run(self, script: str, keys: list[str], args: list[str | int]) -> Any:
        """Every script call goes through here: EVALSHA, reloading a script Redis forgot."""
        return await self.scripts[script](keys=keys, args=args)

    def _check(self, partition: int) -> int:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} not in 0..{self.partitions - 1}")
        return partition

    # --- lifecycle ---

    @_guarded
    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()

    # --- sender <-> conversation mapping, and the sender's handoff record ---

    @_guarded
    async def link(self, sender: SenderId, conversation: ConversationId) -> None:
        # The two directions live in different slots (one per sender, one per conversation):
        # the one documented cross-slot MULTI. The version bump makes a concurrent CAS writer
        # that loaded the record before the link retry on top of it.
        record = self.keys.record(sender)
        async with self.redis.pipeline(transaction=True) as tx:
            tx.hset(record, CONVERSATION_FIELD, conversation)
            tx.hincrby(record, VERSION_FIELD, 1)
            tx.pexpire(record, MAPPING_TTL_MS)
            tx.set(self.keys.conversation(conversation), sender, px=MAPPING_TTL_MS)
            await tx.execute()

    @_guarded
    async def sender_of(self, conversation: ConversationId) -> SenderId | None:
        raw = await self.redis.get(self.keys.conversation(conversation))
        if raw is None:
            return None
        sender = SenderId(_text(raw))
        forward = await self.redis.hget(self.keys.record(sender), CONVERSATION_FIELD)
        # A reverse key without a matching record is a half-written link (or a conversation
        # the sender has since replaced): not valid.
        return sender if forward is not None and _text(forward) == conversation else None

    @_guarded
    async def load_handoff(self, sender: SenderId) -> HandoffRecord | None:
        return _record(await self.redis.hgetall(self.keys.record(sender)))

    @_guarded
    async def save_handoff(
        self, sender: SenderId, fields: dict[str, str], expected_version: int
    ) -> bool:
        if VERSION_FIELD in fields:
            raise ValueError(f"{VERSION_FIELD!r} is reserved for the record's version")
        pairs = [part for name, value in fields.items() for part in (name, value)]
        written, conversation = await self._run(
            "save_handoff",
            [self.keys.record(sender)],
            [expected_version, MAPPING_TTL_MS, VERSION_FIELD, CONVERSATION_FIELD, *pairs],
        )
        if not int(written):
            return False
        if conversation:
            # Keep the reverse direction alive as long as the record (its own slot, so not in
            # the script; a lapse here only shortens its life, sender_of stays correct).
            reverse = self.keys.conversation(ConversationId(_text(conversation)))
            await self.redis.pexpire(reverse, MAPPING_TTL_MS)
        await live_index.update(self.redis, self.keys, sender, live_index.is_live(fields))
        return True

    # --- per-sender lease ---

    @_guarded
    async def acquire_sender_lease(self, sender: SenderId, ttl_ms: int) -> str | None:
        token = secrets.token_hex(16)
        taken = await self.redis.set(self.keys.sender_lease(sender), token, nx=True, px=ttl_ms)
        return token if taken else None

    @_guarded
    async def release_sender_lease(self, sender: SenderId, token: str) -> None:
        await self._run("release_lease", [self.keys.sender_lease(sender)], [token])

    # --- the webhook door ---

    @_guarded
    async def enqueue_event(
        self, partition: int, event_id: EventId, payload: str, dedupe_ttl_s: int
    ) -> bool:
        p = self._check(partition)
        keys = [self.keys.claim(p, event_id), self.keys.stream(p)]
        return bool(await self._run("enqueue_event", keys, [event_id, payload, dedupe_ttl_s]))

    # --- the relay ---

    @_guarded
    async def acquire_partition(self, partition: int, owner: str, ttl_ms: int) -> int:
        lease = self.keys.partition_lease(self._check(partition))
        return int(await self._run("acquire_lease", [lease], [owner, ttl_ms]))

    @_guarded
    async def relay_heartbeat(self, owner: str, ttl_ms: int) -> int:
        return int(await self._run("relay_heartbeat", [self.keys.relays()], [owner, ttl_ms]))

    async def relay_leave(self, owner: str) -> None:
        await self.relay_heartbeat(owner, 0)  # lapses at once: the others take its share now

    @_guarded
    async def release_partition(self, partition: int, owner: str) -> None:
        lease = self.keys.partition_lease(self._check(partition))
        await self._run("release_lease", [lease], [owner])

    @_guarded
    async def read_events(self, partition: int, count: int) -> list[StreamEntry]:
        # Acked entries are deleted from the stream, so the oldest entries left are exactly
        # the undelivered ones: no cursor or consumer group needed.
        found = await self.redis.xrange(self.keys.stream(self._check(partition)), count=count)
        return [_entry(entry_id, fields) for entry_id, fields in found or [] if entry_id and fields]

    @_guarded
    async def ack_event(self, partition: int, entry_id: str, owner: str) -> bool:
        p = self._check(partition)
        keys = [self.keys.partition_lease(p), self.keys.stream(p), self.keys.attempts(p)]
        return bool(await self._run("ack_event", keys, [owner, entry_id]))

    @_guarded
    async def note_attempt(self, partition: int, entry_id: str) -> int:
        return int(await self.redis.hincrby(self.keys.attempts(self._check(partition)), entry_id))

    @_guarded
    async def begin_attempt(
        self, partition: int, entry_id: str, sender: SenderId
    ) -> tuple[int, HandoffRecord | None]:
        # One round trip for the relay's two reads per delivery. Not a transaction: the two
        # keys live in different slots, and neither read depends on the other.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(self.keys.attempts(self._check(partition)), entry_id)
            pipe.hgetall(self.keys.record(sender))
            attempts, raw = await pipe.execute()
        return int(attempts), _record(raw)

    @_guarded
    async def dead_letter(
        self, partition: int, entry: StreamEntry, reason: str, owner: str
    ) -> bool:
        p = self._check(partition)
        args: list[str | int] = [owner, entry.entry_id, entry.event_id, entry.payload, reason]
        # The interface gives only the entry: the held index says whether (and for which
        # conversation) it is held, so the script can name the hold list among its KEYS.
        await self._trim_dead_letters()
        held_by = await self.redis.hget(self.keys.held_index(p), entry.entry_id)
        if held_by is None:
            keys = [
                self.keys.partition_lease(p),
                self.keys.stream(p),
                self.keys.attempts(p),
                self.keys.dead(p),
            ]
            return bool(await self._run("dead_letter_from_stream", keys, args))
        conversation = ConversationId(_text(held_by))
        keys = [
            self.keys.partition_lease(p),
            self.keys.hold(p, conversation),
            self.keys.held(p),
            self.keys.held_index(p),
            self.keys.attempts(p),
            self.keys.dead(p),
        ]
        return bool(await self._run("dead_letter_from_hold", keys, [*args, conversation]))

    async def _trim_dead_letters(self) -> None:
        """Dead letters older than `dead_letter_max_age_ms` go, in every partition (their ids
        are when they were parked). Done whenever one is parked: they are rare, and the age
        limit matters only while new ones keep coming."""
        cutoff = f"{max(0, int(time.time() * 1000) - self.dead_letter_max_age_ms)}-0"
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in range(self.partitions):
                pipe.xtrim(self.keys.dead(p), minid=cutoff)
            trimmed = sum(int(n) for n in await pipe.execute())
        if trimmed:
            log.warning("dead_letters_trimmed", extra={"count": trimmed})

    @_guarded
    async def list_dead_letters(self, count: int = 100) -> list[DeadLetter]:
        out: list[DeadLetter] = []
        for p in range(self.partitions):  # a fixed set of keys: no KEYS/SCAN
            if len(out) >= count:
                break
            found = await self.redis.xrange(self.keys.dead(p), count=count - len(out))
            out.extend(
                _dead_letter(p, dead_id, fields)
                for dead_id, fields in found or []
                if dead_id and fields
            )
        return out

    @_guarded
    async def replay_dead_letter(self, partition: int, dead_id: str) -> bool:
        p = self._check(partition)
        if not _STREAM_ID.fullmatch(dead_id):
            return False  # not an id Redis could have given: unknown, not an error
        keys = [self.keys.dead(p), self.keys.stream(p), self.keys.attempts(p)]
        return bool(await self._run("replay_dead_letter", keys, [dead_id]))

    # --- events for conversations not mapped yet ---

    @_guarded
    async def hold_event(
        self,
        partition: int,
        conversation: ConversationId,
        entry: StreamEntry,
        deadline_ms: int,
        owner: str,
    ) -> bool:
        p = self._check(partition)
        keys = [
            self.keys.partition_lease(p),
            self.keys.stream(p),
            self.keys.hold(p, conversation),
            self.keys.held(p),
            self.keys.held_index(p),
        ]
        args: list[str | int] = [
            owner,
            entry.entry_id,
            serialize_held(entry),
            conversation,
            deadline_ms,
        ]
        return bool(await self._run("hold_event", keys, args))

    @_guarded
    async def held_conversations(self, partition: int) -> dict[ConversationId, int]:
        held = self.keys.held(self._check(partition))
        found: list[Any] = await self.redis.zrange(held, 0, -1, withscores=True)
        # withscores=True: (member, score) pairs (the client's type covers every mode)
        return {ConversationId(_text(cid)): int(deadline) for cid, deadline in found}

    @_guarded
    async def held_events(self, partition: int, conversation: ConversationId) -> list[StreamEntry]:
        found = await self.redis.lrange(self.keys.hold(self._check(partition), conversation), 0, -1)
        return [_deserialize_held(raw) for raw in found]

    @_guarded
    async def unhold_event(
        self, partition: int, conversation: ConversationId, entry_id: str, owner: str
    ) -> bool:
        p = self._check(partition)
        keys = [
            self.keys.partition_lease(p),
            self.keys.hold(p, conversation),
            self.keys.held(p),
            self.keys.held_index(p),
            self.keys.attempts(p),
        ]
        return bool(await self._run("unhold_event", keys, [owner, entry_id, conversation]))

    # --- the outbox ---

    @_guarded
    async def outbox_push(self, sender: SenderId, item: str) -> int:
        outbox = self.keys.outbox(sender)
        # Not a transaction: the index is in another slot. The list is written before the
        # index, so a concurrent repair (below) that removes the sender re-checks the list
        # after we pushed and puts it back.
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(outbox, item)
            pipe.pexpire(outbox, OUTBOX_TTL_MS)
            pipe.sadd(self.keys.outbox_index(), sender)
            replies = await pipe.execute()
        return int(replies[0])

    @_guarded
    async def outbox_peek(self, sender: SenderId) -> str | None:
        head = await self.redis.lindex(self.keys.outbox(sender), 0)
        if head is None:
            await self._repair_outbox_index(sender)
            return None
        return _text(head)

    @_guarded
    async def outbox_pop(self, sender: SenderId, item: str) -> None:
        left = await self._run("outbox_pop", [self.keys.outbox(sender)], [item])
        if int(left) == 0:
            await self._repair_outbox_index(sender)

    @_guarded
    async def outbox_senders(self) -> list[SenderId]:
        members = await self.redis.smembers(self.keys.outbox_index())
        return sorted(SenderId(_text(m)) for m in members)

    async def _repair_outbox_index(self, sender: SenderId) -> None:
        """Drop an empty outbox from the index. Remove first, then look again: a push that
        raced us has written its list by the time its own SADD could be undone by our SREM,
        so the second look sees it and restores the entry."""
        index = self.keys.outbox_index()
        await self.redis.srem(index, sender)
        if await self.redis.llen(self.keys.outbox(sender)):
            await self.redis.sadd(index, sender)


def _dead_letter(partition: int, dead_id: bytes | str, fields: dict[Any, Any]) -> DeadLetter:
    decoded = {_text(k): _text(v) for k, v in fields.items()}
    entry = StreamEntry(decoded["id"], EventId(decoded["eid"]), decoded["ev"])
    return DeadLetter(_text(dead_id), partition, entry, decoded["why"])


def _conforms(store: RedisStore) -> Store:
    """Never called: makes mypy prove that `RedisStore` implements the `Store` Protocol."""
    return store
