"""The one `Store` implementation, on Redis (real, or fakeredis for the embedded store).

Every multi-key atomic step is a Lua script from `scripts.py` over keys of one hash slot (the
rule in `keys.py`), so the same code runs on one Redis and on a Redis Cluster. The two changes
that span slots, `link` and the outbox index, are ordered sequences of single-slot steps; the
crash analysis of each is beside its code; the
index of live handoffs (`live_index.py`) may lag, and its readers repair it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.commands.core import AsyncScript

from bridge.errors import StaleClaim, StoreUnavailable
from bridge.handoff import DisarmTimer, TimerChange, TimerFired
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import live_index, scripts, timers
from bridge.store.base import (
    TIMER_EVENT_PREFIX,
    Admitted,
    Begin,
    Claim,
    ClaimResult,
    DeadLetter,
    Enqueued,
    HandoffRecord,
    MessageClaim,
    MessageState,
    RunAck,
    RunClaim,
    RunMessage,
    Started,
    Store,
    StreamEntry,
    admit_in_steps,
    next_stream_id,
    partition_of,
)
from bridge.store.keys import (
    CONVERSATION_FIELD,
    DAY_S,
    DEAD_LETTER_MAX_AGE_MS,
    ENQUEUED_AFTER_DELIVERY_MS,
    MAPPING_TTL_MS,
    MAX_CLAIM_TO_ENQUEUE_MS,
    OUTBOX_TTL_MS,
    REFRESHED_FIELD,
    STATE_FIELD,
    VERSION_FIELD,
    ClaimBuckets,
    Keys,
    claim_buckets,
    timer_shard,
)
from bridge.store.line import Line

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

Client = aioredis.Redis | RedisCluster  # one Redis (or fakeredis), or a Redis Cluster


@dataclass(frozen=True, slots=True)
class _Plain:
    """A plain command among the scripts of `RedisStore._in_order`."""

    command: str


# One command of `_in_order`: a script's name (or a plain command), its KEYS, its ARGV.
Call = tuple[str | _Plain, list[str], list[str | int]]


@dataclass(frozen=True, slots=True)
class _TimerSetChange:
    """What a step does to one timer set: members armed (due time), and members disarmed (the
    due time they must still have to go)."""

    arm: dict[str, int]
    forget: dict[str, int]


# How long an ack (`_finish`) may wait to share the write of another request on the line.
# Nothing waits on its reply but the next entry of the same lane; at a paced load most acks
# then go out with the next event's claim, a send() and a recv() of the relay's fewer per
# event, for this much more time before the entry leaves the stream.
FINISH_HOLD_S = 0.001

# How often a push may find the outbox index forgetting its sender before it gives up: each
# retry needs another drainer to find the outbox empty in between, so one retry is rare.
_OUTBOX_PUSH_TRIES = 5

# What "Redis cannot be reached or did not answer in time" looks like. ReadOnlyError is a
# replica answering during a failover: as transient as a dropped connection. On a Cluster: the
# cluster is down or a master is (ClusterError), a slot is migrating (TryAgainError) or has no
# node right now (SlotNotCoveredError).
_UNAVAILABLE = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.ClusterError,
    rexc.TryAgainError,
    rexc.SlotNotCoveredError,
    ConnectionError,
    TimeoutError,
)

# Reply errors that mean Redis cannot take writes now, by the code the message starts with.
# redis-py strips the code of an OOM reply (it raises OutOfMemoryError), so that one goes by type.
_TRANSIENT_REPLIES = ("BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")

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
        except rexc.RedisClusterException as exc:
            # The cluster client's own error when no node answers (the connection error is its
            # cause); any other (a command it cannot route) is a bug, and stays one.
            if isinstance(exc.__cause__, _UNAVAILABLE):
                raise StoreUnavailable(f"redis unavailable: {exc}") from exc
            raise
        except rexc.ResponseError as exc:
            # Out of memory, busy with a script, loading, failing over: Redis is there but
            # cannot take writes now. Callers answer 503 / retry, as for a dropped connection.
            if isinstance(exc, rexc.OutOfMemoryError) or str(exc).startswith(_TRANSIENT_REPLIES):
                raise StoreUnavailable(f"redis unavailable: {exc}") from exc
            raise

    return wrapper


def _text(value: bytes | str) -> str:
    # Decode consistently whether or not the client was built with decode_responses=True.
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _pairs(raw: dict[Any, Any] | list[Any] | None) -> dict[Any, Any]:
    """A hash as a dict, from a reply redis-py has parsed (a dict) or not (RESP2's flat list
    of field, value, ...: what `Line` returns)."""
    if isinstance(raw, dict):
        return raw
    items = raw or []
    return dict(zip(items[::2], items[1::2], strict=True))


def _record(raw: dict[Any, Any] | None) -> HandoffRecord | None:
    if not raw:
        return None
    fields = {_text(k): _text(v) for k, v in raw.items()}
    version = int(fields.pop(VERSION_FIELD, "0"))
    fields.pop(REFRESHED_FIELD, None)
    return HandoffRecord(fields, version)


def _enqueued(
    added: Any, event_id: EventId, payload: str, claimed: bool,
    record: HandoffRecord | None = None, record_read: bool = True,
) -> Enqueued | None:  # fmt: skip
    """ENQUEUE_EVENT's answer (or ENQUEUE_AND_BEGIN's, with the step's three when it was
    taken, and the `record` read beside it): None when nothing was appended."""
    if not isinstance(added, list):
        return None
    entry = StreamEntry(_text(added[0]), event_id, payload, claimed)
    started = None
    if len(added) > 2:  # the step was taken
        ordinal, claim, attempts = int(added[2]), MessageClaim(_text(added[3])), int(added[4])
        started = Started(ordinal, claim, attempts, record, record_read)
    return Enqueued(entry, _text(added[1]), started)


def _entry(entry_id: bytes | str, fields: dict[Any, Any]) -> StreamEntry:
    decoded = {_text(k): _text(v) for k, v in fields.items()}
    claimed = decoded.get("c") == "1"
    return StreamEntry(_text(entry_id), EventId(decoded["eid"]), decoded["ev"], claimed)


def serialize_held(entry: StreamEntry) -> str:
    """A held entry as stored in a hold list; the entry id leads (the scripts match on it)."""
    return json.dumps([entry.entry_id, entry.event_id, entry.payload], separators=(",", ":"))


def _deserialize_held(raw: bytes | str) -> StreamEntry:
    entry_id, event_id, payload = json.loads(_text(raw))
    return StreamEntry(str(entry_id), EventId(str(event_id)), str(payload))


class RedisStore:
    """`Store` on a redis.asyncio client (a real Redis, a Redis Cluster, or a fakeredis)."""

    def __init__(self, client: Client, prefix: str = "", partitions: int = 16) -> None:
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        self.redis = client
        # The hot path's commands on one server; a Cluster's client routes them by slot.
        self.line = None if isinstance(client, RedisCluster) else Line.of(client)
        self.keys = Keys(prefix)
        self.partitions = partitions
        self.dead_letter_max_age_ms = DEAD_LETTER_MAX_AGE_MS  # `serve` sets its setting here
        # EVENT_DEDUPE_TTL_S (`serve` sets it): how long a claim is kept, and so where claims
        # live (`keys.claim_buckets`); the door and the relay's settle must agree on it.
        self.event_dedupe_ttl_s = DAY_S
        self.clock: Callable[[], float] = time.time  # picks the claims' buckets (tests move it)
        # A claim and a settle name their shard's hashes for the buckets around now: the same
        # keys for every event id of the shard until the buckets move on (once per bucket
        # width). By shard, the current window only: (first, buckets, keys), at most
        # CLAIM_SHARDS entries. A plain dict: an lru_cache of a bound method would make the
        # store a reference cycle, freed only by a (now rare) collection.
        self._claim_hashes: dict[int, tuple[int, int, tuple[str, ...]]] = {}
        self._reloading: asyncio.Task[None] | None = None
        # Registered once; each call is EVALSHA, with a reload if the server lost the script.
        self.scripts: dict[str, AsyncScript] = {
            name: client.register_script(source) for name, source in scripts.ALL.items()
        }

    async def _run(
        self, script: str, keys: list[str], args: list[str | int], *, hold_s: float = 0.0
    ) -> Any:
        """Every script call goes through here: EVALSHA, reloading a script Redis forgot.
        `hold_s`: see `_in_order`."""
        if self.line is None:
            return await self.scripts[script](keys=keys, args=args)
        return (await self._in_order([(script, keys, args)], hold_s=hold_s))[0]

    async def _one(self, call: Call) -> Any:
        """One command of `_in_order` alone (on a Cluster too)."""
        name, keys, args = call
        if isinstance(name, _Plain):
            return await self.redis.execute_command(name.command, *keys, *args)
        return await self._run(name, keys, args)

    async def _in_order(self, calls: Sequence[Call], *, hold_s: float = 0.0) -> list[Any]:
        """Commands (a script's name, or a plain command: `_Plain`) in one round trip, run in
        order: a batch runs in order on its connection. Not a transaction (the keys live in
        several slots), and not for a Cluster (no `Line`). Sent again, whole, after loading the
        scripts if Redis forgot them (restart, SCRIPT FLUSH): for steps that are safe to redo.
        The replies, in order; the first reply error is raised. `hold_s`: how long the calls may
        wait to share another request's write (`Line.batch`), for a step nothing waits on."""
        assert self.line is not None
        commands = [self._command(call) for call in calls]
        for _ in range(2):
            replies = await self.line.batch(commands, hold_s=hold_s)
            for reply in replies:
                if isinstance(reply, rexc.ResponseError):
                    break
            else:
                return replies
            errors = [r for r in replies if isinstance(r, rexc.ResponseError)]
            if not any(isinstance(e, rexc.NoScriptError) for e in errors):
                raise errors[0]
            await self._load_scripts()
        raise StoreUnavailable("redis keeps forgetting the store's scripts")

    async def _load_scripts(self) -> None:
        """Every script of the store, in one batch: on the line's one connection, another step
        goes out before all of them or after all of them. Reloading only a step's own would let
        a later step find one script back and the one before it missing: it would run in part,
        out of order (an ack before the settle it must follow), then whole when sent again.
        One reload at a time, shared: every step in flight after a restart finds NOSCRIPT, and
        its NOSCRIPT came before the reload in progress was written, so that reload is enough."""
        if self._reloading is None:
            self._reloading = asyncio.get_running_loop().create_task(self._reload())
            # Its failure is its callers'; retrieved even if they all gave up.
            self._reloading.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(self._reloading)

    async def _reload(self) -> None:
        try:
            await self._send_scripts()
        finally:
            self._reloading = None

    async def _send_scripts(self) -> None:
        assert self.line is not None
        loads = [["SCRIPT", "LOAD", script.script] for script in self.scripts.values()]
        for reply in await self.line.batch(loads):
            if isinstance(reply, rexc.ResponseError):
                raise reply

    def _command(self, call: Call) -> tuple[Any, ...]:
        # A tuple: what the line's packer takes as it is.
        name, keys, args = call
        if isinstance(name, _Plain):
            return (name.command, *keys, *args)
        return ("EVALSHA", self.scripts[name].sha, len(keys), *keys, *args)

    def _check(self, partition: int) -> int:
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} not in 0..{self.partitions - 1}")
        return partition

    # --- lifecycle ---

    @_guarded
    async def ping(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        if self.line is not None:
            await self.line.close()
        await self.redis.aclose()

    # --- sender <-> conversation mapping, and the sender's handoff record ---

    @_guarded
    async def link(self, sender: SenderId, conversation: ConversationId) -> None:
        # Two single-slot steps (the directions live in the conversation's and the sender's
        # slots). `sender_of` trusts a link only when both directions agree, so the second step,
        # which makes the record name the conversation, is the commit. A crash:
        # - before step 1: nothing written.
        # - between the steps: a reverse key the record does not confirm. `sender_of` ignores
        #   it; the sender's previous link (if any) still holds, so nothing is routed to the
        #   wrong sender and nothing already linked comes unlinked. The new conversation's
        #   events are held by the relay until a retry completes the link (the service repairs
        #   it on the next escalation: `HandoffService._repair_link`), and the stray key
        #   expires with MAPPING_TTL_MS. (When the record already names the conversation, as the
        #   service writes it first, the link is complete after step 1.)
        # - after step 2: complete.
        # The other order would, between its steps, leave the record naming a conversation that
        # maps to nobody: the old link gone and the new one not yet valid.
        await self.redis.set(self.keys.conversation(conversation), sender, px=MAPPING_TTL_MS)
        await self._run(
            "link_record",
            [self.keys.record(sender)],
            [conversation, MAPPING_TTL_MS, VERSION_FIELD, CONVERSATION_FIELD],
        )

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
        if VERSION_FIELD in fields or REFRESHED_FIELD in fields:
            raise ValueError(f"{VERSION_FIELD!r} and {REFRESHED_FIELD!r} are reserved")
        pairs = [part for name, value in fields.items() for part in (name, value)]
        day = int(time.time() // DAY_S)
        written, conversation, refresh = await self._run(
            "save_handoff",
            [self.keys.record(sender)],
            [expected_version, MAPPING_TTL_MS, VERSION_FIELD, CONVERSATION_FIELD, STATE_FIELD,
             REFRESHED_FIELD, day, *pairs],
        )  # fmt: skip
        if not int(written):
            return False
        if int(refresh):
            await self._refresh_beside(sender, _text(conversation), live_index.is_live(fields))
        return True

    async def _refresh_beside(self, sender: SenderId, conversation: str, live: bool) -> None:
        """What lives beside a record, in other slots: the conversation -> sender direction is
        kept alive as long as the record (a lapse here only shortens its life; sender_of stays
        correct), and the live index follows the record. After a state change, and once a day
        (the mapping lives 90 days, the index may lag: its readers repair it)."""
        update = live_index.update_args(self.keys, sender, live)
        reverse = [self.keys.conversation(ConversationId(conversation))] if conversation else []
        if self.line is None:  # a Cluster: the keys live on several nodes
            await asyncio.gather(
                *(self.redis.pexpire(key, MAPPING_TTL_MS) for key in reverse),
                self._run("live_update", *update),
            )
            return
        calls: list[Call] = [("live_update", *update)]
        calls += [(_Plain("PEXPIRE"), [key], [MAPPING_TTL_MS]) for key in reverse]
        await self._in_order(calls)

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

    def _claim_keys(self, event_id: EventId) -> tuple[ClaimBuckets, list[str]]:
        """The claim hashes `event_id` may be in and, on a single Redis, its claim in the form
        before (on a Cluster it is in another slot: docs/security-webhook.md)."""
        where = claim_buckets(event_id, int(self.clock() * 1000), self.event_dedupe_ttl_s)
        cached = self._claim_hashes.get(where.shard)
        if cached is None or cached[0] != where.first or cached[1] != where.buckets:
            built = self._build_claim_hashes(where.shard, where.first, where.buckets)
            cached = self._claim_hashes[where.shard] = (where.first, where.buckets, built)
        keys = list(cached[2])
        if self.line is not None:  # a single Redis
            keys.append(self.keys.event_claim(event_id))
        return where, keys

    def _build_claim_hashes(self, shard: int, first: int, count: int) -> tuple[str, ...]:
        """The keys of shard `shard`'s claim hashes for buckets `first` .. `first + count - 1`."""
        return tuple(
            self.keys.event_claims(shard, bucket) for bucket in range(first, first + count)
        )

    @_guarded
    async def claim_event(
        self, event_id: EventId, body_sha256: str, *, settled: bool
    ) -> ClaimResult:
        where, keys = self._claim_keys(event_id)
        args = self._claim_args(where, body_sha256, "d" if settled else "p")
        found, at_ms = await self._run("claim_event", keys, args)
        return ClaimResult(Claim(_text(found)), int(at_ms))

    def _claim_args(self, where: ClaimBuckets, body_sha256: str, state: str) -> list[str | int]:
        return [
            where.field, _compact_digest(body_sha256), state, body_sha256,
            where.current - where.first + 1, where.current_end_ms,
            self.event_dedupe_ttl_s * 1000, where.buckets,
        ]  # fmt: skip

    def _settle(self, event_id: EventId) -> tuple[str, list[str], list[str | int]]:
        where, keys = self._claim_keys(event_id)
        return "settle_event", keys, [where.field, where.buckets]

    @_guarded
    async def settle_event(self, event_id: EventId) -> None:
        await self._run(*self._settle(event_id))

    @_guarded
    async def enqueue_event(
        self, partition: int, event_id: EventId, payload: str, dedupe_ttl_s: int,
        claimed_ms: int | None = None, *, ring: bool = False, begin: Begin | None = None,
    ) -> Enqueued | None:  # fmt: skip
        p = self._check(partition)
        keys = [self.keys.enqueued(p, event_id), self.keys.stream(p)]
        since = "" if claimed_ms is None else claimed_ms
        bell = self.keys.doorbell() if ring else ""
        args: list[str | int] = [
            event_id, payload, dedupe_ttl_s, since, MAX_CLAIM_TO_ENQUEUE_MS, bell, p,
        ]  # fmt: skip
        record: HandoffRecord | None = None
        read = True
        if begin is None:
            added = await self._run("enqueue_event", keys, args)
        else:
            keys += self._begin_keys(p, begin)
            args += self._begin_args(begin)
            added, record, read = await self._enqueue_and_begin(keys, args, begin.sender)
        if not isinstance(added, list) and int(added) < 0:  # -1: too late
            raise StaleClaim("the enqueue came too long after its claim")
        return _enqueued(added, event_id, payload, claimed_ms is not None, record, read)

    @_guarded
    async def admit_event(
        self, partition: int, event_id: EventId, body_sha256: str, payload: str,
        dedupe_ttl_s: int, *, ring: bool = False, begin: Begin | None = None,
    ) -> Admitted:  # fmt: skip
        if self.line is None:  # a Cluster: the claim and the partition live in two slots
            return await admit_in_steps(
                self, partition, event_id, body_sha256, payload, dedupe_ttl_s, ring=ring,
                begin=begin,
            )  # fmt: skip
        p = self._check(partition)
        where, keys = self._claim_keys(event_id)
        keys += [self.keys.enqueued(p, event_id), self.keys.stream(p)]
        # Done at once: one step with the append (ADMIT_EVENT), nothing for a delivery to settle.
        args = self._claim_args(where, body_sha256, "d")
        bell = self.keys.doorbell() if ring else ""
        args += [event_id, payload, dedupe_ttl_s, MAX_CLAIM_TO_ENQUEUE_MS, bell, p]
        record: HandoffRecord | None = None
        if begin is None:
            state, _at_ms, added = await self._run("admit_event", keys, args)
        else:
            keys += self._begin_keys(p, begin)
            args += self._begin_args(begin)
            answer, record = await self._run_with_record("admit_event", keys, args, begin.sender)
            state, _at_ms, added = answer
        if not isinstance(added, list) and int(added) < 0:  # never in one step; as enqueue_event
            raise StaleClaim("the enqueue came too long after its claim")
        claim = Claim(_text(state))
        # Only a pending claim (an earlier version's) was enqueued behind a marker, to settle.
        pending = claim is Claim.PENDING
        return Admitted(claim, _enqueued(added, event_id, payload, pending, record))

    def _begin_keys(self, partition: int, begin: Begin) -> list[str]:
        return [
            self.keys.partition_lease(partition), self.keys.delivered(partition, begin.conversation),
            self.keys.attempts(partition),
        ]  # fmt: skip

    @staticmethod
    def _begin_args(begin: Begin) -> list[str | int]:
        return [begin.owner, begin.digest, begin.ordinal, MAPPING_TTL_MS, begin.frontier]

    async def bells(self, subscribed: Callable[[], None] = lambda: None) -> AsyncIterator[int]:
        """The partitions rung by other processes' enqueues (`enqueue_event(ring=True)`), as
        they come, until cancelled. Pub/sub delivers at most once, and nothing while this
        process is not subscribed: a consumer's poll stays the net under it. Raises
        StoreUnavailable when the subscription breaks (the caller subscribes again)."""
        pubsub: PubSub | ClusterPubSub
        if isinstance(self.redis, RedisCluster):
            # Any one node: a message published on one reaches every node's subscribers.
            await self.redis.initialize()
            node = self.redis.get_default_node()
            pubsub = self.redis.pubsub(node=node, ignore_subscribe_messages=True)
        else:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        try:
            try:
                await pubsub.subscribe(self.keys.doorbell())
            except _UNAVAILABLE as exc:
                raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
            subscribed()
            while True:
                try:
                    message = await pubsub.get_message(timeout=None)
                except _UNAVAILABLE as exc:
                    raise StoreUnavailable(f"redis unavailable: {type(exc).__name__}") from exc
                if message is not None and _text(message.get("data", b"")).isdigit():
                    yield int(_text(message["data"]))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

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
    async def read_events(
        self, partition: int, count: int, after: str | None = None
    ) -> list[StreamEntry]:
        # Acked entries are deleted from the stream, so the oldest entries left are exactly
        # the undelivered ones: no cursor or consumer group needed. `after` is the caller's
        # own cursor (the relay reads past what its lanes still have in hand).
        key = self.keys.stream(self._check(partition))
        start = "-" if after is None else next_stream_id(after)
        if self.line is None:
            found = await self.redis.xrange(key, min=start, count=count)
        else:
            raw = await self.line.execute("XRANGE", key, start, "+", "COUNT", count)
            found = [(entry_id, _pairs(fields)) for entry_id, fields in raw or []]
        return [_entry(entry_id, fields) for entry_id, fields in found or [] if entry_id and fields]

    @_guarded
    async def ack_event(
        self, partition: int, entry_id: str, owner: str, event_id: EventId | None = None,
        timers: Sequence[TimerChange] = (), *, claimed: bool = False,
    ) -> bool:  # fmt: skip
        p = self._check(partition)
        keys = [self.keys.partition_lease(p), self.keys.stream(p), self.keys.attempts(p)]
        args: list[str | int] = [owner, entry_id]
        settles: list[EventId] = []
        if claimed and event_id is not None:
            keys.append(self.keys.enqueued(p, event_id))
            args.append(ENQUEUED_AFTER_DELIVERY_MS)
            settles.append(event_id)
        return bool(await self._finish("ack_event", keys, args, settles, timers))

    async def _finish(
        self, script: str, keys: list[str], args: list[str | int],
        claimed: Sequence[EventId] = (), timers: Sequence[TimerChange] = (),
        hold_s: float = FINISH_HOLD_S,
    ) -> Any:  # fmt: skip
        """A step that finishes entries (`script`: an ack or an unhold), with what goes with it:
        the webhook's pending claims of the events (`claimed` entries: a Cluster's two steps)
        settled first, before the script lets their enqueued markers go (never a marker gone
        while its claim still says pending, or a late retry of the event could be enqueued
        again), and the timers the delivery armed. One
        round trip on one Redis (a pipeline runs in order on its connection); two on a Cluster,
        where the keys live on different nodes. A timer armed by a step that is then fenced out
        is harmless: the record it was saved with names it, and the next holder re-arms it.
        `hold_s`: how long it may wait for company on the line (an unhold does not: held
        entries are released one after another, each waiting for the last)."""
        settles = [self._settle(event_id) for event_id in claimed]
        changes = [
            self._timer_call(key, change) for key, change in self._timer_sets(timers).items()
        ]
        if not settles and not changes:
            return await self._run(script, keys, args, hold_s=hold_s)
        if self.line is None:  # a Cluster: the keys live on several nodes
            await asyncio.gather(*(self._one(call) for call in [*settles, *changes]))
            return await self._run(script, keys, args)
        # Safe to send again whole: the settles, the timer changes and the ack are idempotent,
        # and the markers are kept a while after the ack.
        calls = [*settles, *changes, (script, keys, args)]
        return (await self._in_order(calls, hold_s=hold_s))[-1]

    def _timer_sets(self, changes: Sequence[TimerChange]) -> dict[str, _TimerSetChange]:
        """What `changes` do to each timer set (one member per kind and handoff), by key: each
        member's last change alone, an arming (its due time) or a disarming (the due time it
        disarms). An arming the same changes then disarm is not made at all: the set keeps
        what it had, which the saved record does not name (stale when it fires, ignored)."""
        out: dict[str, _TimerSetChange] = {}
        for change in changes:
            disarm = isinstance(change, DisarmTimer)
            timer = change.timer if isinstance(change, DisarmTimer) else change
            key = self._timer_set(timer)
            into = out.setdefault(key, _TimerSetChange({}, {}))
            member = timers.timer_member(timer)
            (into.arm if disarm else into.forget).pop(member, None)
            (into.forget if disarm else into.arm)[member] = timer.due_ms
        return out

    def _timer_set(self, timer: TimerFired, partition: int | None = None) -> str:
        """The key of the timer shard that holds `timer`'s arming."""
        if partition is None:
            partition = partition_of(timer.conversation_id, self.partitions)
        return self.keys.timers(partition, timer_shard(timer.conversation_id))

    @staticmethod
    def _timer_call(key: str, change: _TimerSetChange) -> Call:
        # The members armed and those disarmed are distinct (`_timer_sets`). A plain ZADD when
        # nothing is disarmed: an agent message's usual change.
        arm = [part for member, due in change.arm.items() for part in (due, member)]
        if not change.forget:
            return (_Plain("ZADD"), [key], arm)
        forget = [part for member, due in change.forget.items() for part in (member, due)]
        return ("change_timers", [key], [len(change.arm), *arm, *forget])

    @_guarded
    async def note_attempt(self, partition: int, entry_id: str) -> int:
        return int(await self.redis.hincrby(self.keys.attempts(self._check(partition)), entry_id))

    @_guarded
    async def begin_attempt(
        self, partition: int, entry_id: str, sender: SenderId
    ) -> tuple[int, HandoffRecord | None]:
        # One round trip for the relay's two reads per delivery. Not a transaction: the two
        # keys live in different slots, and neither read depends on the other.
        calls: list[Call] = [
            (_Plain("HINCRBY"), [self.keys.attempts(self._check(partition))], [entry_id, 1]),
            (_Plain("HGETALL"), [self.keys.record(sender)], []),
        ]
        if self.line is None:  # a Cluster's pipeline sends each command to its slot's node
            async with self.redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    pipe.execute_command(*self._command(call))
                attempts, raw = await pipe.execute()
        else:
            attempts, raw = await self._in_order(calls)
        return int(attempts), _record(_pairs(raw))

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
        self, partition: int, conversation: ConversationId, entry_id: str, owner: str,
        timers: Sequence[TimerChange] = (),
    ) -> bool:  # fmt: skip
        keys = self._unhold_keys(self._check(partition), conversation)
        args: list[str | int] = [owner, entry_id, conversation]
        return bool(await self._finish("unhold_event", keys, args, timers=timers, hold_s=0.0))

    def _unhold_keys(self, p: int, conversation: ConversationId) -> list[str]:
        """The keys of a fenced unhold (the partition's slot), in the scripts' order."""
        return [
            self.keys.partition_lease(p),
            self.keys.hold(p, conversation),
            self.keys.held(p),
            self.keys.held_index(p),
            self.keys.attempts(p),
        ]

    # --- timers ---

    @_guarded
    async def arm_timer(self, partition: int, timer: TimerFired) -> None:
        key = self._timer_set(timer, self._check(partition))
        await self.redis.zadd(key, {timers.timer_member(timer): timer.due_ms})

    @_guarded
    async def disarm_timer(self, partition: int, timer: TimerFired) -> None:
        key = self._timer_set(timer, self._check(partition))
        forget = {timers.timer_member(timer): timer.due_ms}
        await self._one(self._timer_call(key, _TimerSetChange({}, forget)))

    @_guarded
    async def fire_timers(self, partition: int, now_ms: int, owner: str, limit: int = 100) -> int:
        p = self._check(partition)
        keys = [self.keys.partition_lease(p), self.keys.stream(p), *self.keys.timer_sets(p)]
        args: list[str | int] = [owner, now_ms, limit, TIMER_EVENT_PREFIX]
        return int(await self._run("fire_timers", keys, args))

    # --- the outbox ---

    # The index (one hash, its own slot) lists the senders the drainer visits. Invariant: a
    # non-empty outbox is in the index, once the push that filled it has returned. Each step
    # below is single-slot; the order makes any crash leave at worst an index entry for an
    # empty outbox, which the drainer's next visit removes.

    @_guarded
    async def outbox_push(self, sender: SenderId, item: str) -> int:
        """Three steps: (1) read the sender's fence; (2) index the sender (a fresh token);
        (3) append, unless the fence moved since (1). A crash after (2) leaves an index entry
        for an empty outbox (removed on the drainer's next visit), never an item the index
        lacks. A repair racing us (`_repair_outbox_index`) forgets the sender only after moving
        the fence while the outbox was empty, so our (3) then fails and we index again."""
        outbox, fence = self.keys.outbox(sender), self.keys.outbox_fence(sender)
        for _ in range(_OUTBOX_PUSH_TRIES):
            seen = await self.redis.get(fence)
            await self.redis.hset(self.keys.outbox_index(), sender, secrets.token_hex(8))
            length = await self._run(
                "outbox_push", [outbox, fence], [item, OUTBOX_TTL_MS, _text(seen or "0")]
            )
            if int(length) >= 0:
                return int(length)
        raise StoreUnavailable("outbox push: the index kept forgetting this sender")

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
        members = await self.redis.hkeys(self.keys.outbox_index())
        return sorted(SenderId(_text(m)) for m in members)

    # --- delivered agent messages (bridge/relay/identity.py) ---

    @_guarded
    async def message_state(
        self, partition: int, conversation: ConversationId, digest: str, ordinal: int
    ) -> MessageState:
        """Whether an agent message was delivered, is owned by an entry (in a stream, a hold
        list or the dead letters), or is unknown."""
        delivered = self.keys.delivered(self._check(partition), conversation)
        holder = await self.redis.hget(delivered, f"{digest}:{ordinal}")
        if holder is None:
            return MessageState.UNKNOWN
        return MessageState.DELIVERED if _text(holder) == "d" else MessageState.OWNED

    @_guarded
    async def claim_message(
        self,
        partition: int,
        conversation: ConversationId,
        owner: str,
        digest: str,
        event_id: EventId,
        ordinal: int,
    ) -> tuple[int, MessageClaim]:
        """Take the message (digest, ordinal) for the entry of `event_id`; ordinal 0 = the one
        this event took before, else the lowest free one. Fenced by the partition lease."""
        p = self._check(partition)
        keys = [self.keys.partition_lease(p), self.keys.delivered(p, conversation)]
        args: list[str | int] = [owner, digest, event_id, ordinal, MAPPING_TTL_MS]
        k, claim = await self._run("claim_message", keys, args)
        return int(k), MessageClaim(_text(claim))

    @_guarded
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
        p = self._check(partition)
        keys = [self.keys.partition_lease(p), self.keys.delivered(p, conversation),
                self.keys.attempts(p)]  # fmt: skip
        args: list[str | int] = [owner, digest, event_id, ordinal, MAPPING_TTL_MS, entry_id]
        (k, claim, attempts), record = await self._run_with_record("claim_and_begin", keys, args,
                                                                   sender)  # fmt: skip
        return int(k), MessageClaim(_text(claim)), int(attempts), record

    @_guarded
    async def claim_and_begin_run(
        self,
        partition: int,
        conversation: ConversationId,
        owner: str,
        messages: Sequence[RunMessage],
        sender: SenderId,
    ) -> tuple[list[RunClaim], HandoffRecord | None]:
        p = self._check(partition)
        keys = [self.keys.partition_lease(p), self.keys.delivered(p, conversation),
                self.keys.attempts(p)]  # fmt: skip
        args: list[str | int] = [owner, MAPPING_TTL_MS]
        for m in messages:
            args += [m.digest, m.event_id, m.ordinal, m.entry_id]
        flat, record = await self._run_with_record("claim_and_begin_run", keys, args, sender)
        if len(flat) == 3 and _text(flat[1]) == MessageClaim.LOST:
            return [RunClaim(0, MessageClaim.LOST, 0) for _ in messages], record
        claims = [
            RunClaim(int(flat[i]), MessageClaim(_text(flat[i + 1])), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]
        return claims, record

    async def _enqueue_and_begin(
        self, keys: list[str], args: list[str | int], sender: SenderId
    ) -> tuple[Any, HandoffRecord | None, bool]:
        """`_run_with_record` for the door's enqueue, whose answer must not depend on the
        record: on a Cluster (the record on another node) a failed read is only said (False),
        the enqueue's answer kept."""
        if self.line is not None:
            return *(await self._run_with_record("enqueue_and_begin", keys, args, sender)), True
        read = asyncio.ensure_future(self.redis.hgetall(self.keys.record(sender)))
        try:
            answer = await self._run("enqueue_and_begin", keys, args)
        finally:
            # Its failure is not the enqueue's: awaited either way, so never left unretrieved.
            raw: dict[Any, Any] | BaseException = (
                await asyncio.gather(read, return_exceptions=True)
            )[0]
        if isinstance(raw, BaseException):
            return answer, None, False
        return answer, _record(raw), True

    async def _run_with_record(
        self, script: str, keys: list[str], args: list[str | int], sender: SenderId
    ) -> tuple[Any, HandoffRecord | None]:
        """A script of the partition's slot and the read of the sender's record (another slot)
        in one round trip: not a transaction, the two are independent."""
        if self.line is None:  # a Cluster: the keys live on several nodes
            # Cluster pipelines refuse EVALSHA; the two steps (in two slots, likely two nodes)
            # go out together instead.
            answer, raw = await asyncio.gather(
                self._run(script, keys, args), self.redis.hgetall(self.keys.record(sender))
            )
            return answer, _record(raw)
        read: Call = (_Plain("HGETALL"), [self.keys.record(sender)], [])
        answer, raw = await self._in_order([(script, keys, args), read])
        return answer, _record(_pairs(raw))

    @_guarded
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
        """`ack_event` for an agent message, recording it as delivered in the same step
        (ordinal 0: the lowest not delivered yet). False if `owner` lost the lease."""
        p = self._check(partition)
        keys = [
            self.keys.partition_lease(p),
            self.keys.stream(p),
            self.keys.attempts(p),
            self.keys.delivered(p, conversation),
        ]
        args: list[str | int] = [owner, entry_id, digest, ordinal, MAPPING_TTL_MS]
        settles: list[EventId] = []
        if event_id is not None:
            args.append(event_id)
            if claimed:
                keys.append(self.keys.enqueued(p, event_id))
                args.append(ENQUEUED_AFTER_DELIVERY_MS)
                settles.append(event_id)
        return bool(await self._finish("ack_message", keys, args, settles, timers))

    @_guarded
    async def ack_messages(
        self, partition: int, owner: str, conversation: ConversationId,
        messages: Sequence[RunAck], timers: Sequence[TimerChange] = (),
    ) -> bool:  # fmt: skip
        p = self._check(partition)
        keys = [
            self.keys.partition_lease(p),
            self.keys.stream(p),
            self.keys.attempts(p),
            self.keys.delivered(p, conversation),
        ]
        args: list[str | int] = [owner, MAPPING_TTL_MS, ENQUEUED_AFTER_DELIVERY_MS]
        settles: list[EventId] = []
        for m in messages:
            settle = m.event_id if m.claimed else None
            args += [m.entry_id, m.digest, m.ordinal, m.event_id or "", "1" if settle else ""]
            if settle is not None:
                keys.append(self.keys.enqueued(p, settle))
                settles.append(settle)
        return bool(await self._finish("ack_messages", keys, args, settles, timers))

    @_guarded
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
        """`unhold_event` for an agent message, recording it as delivered in the same step."""
        p = self._check(partition)
        keys = [*self._unhold_keys(p, conversation), self.keys.delivered(p, conversation)]
        args: list[str | int] = [owner, entry_id, conversation, digest, ordinal, MAPPING_TTL_MS]
        return bool(await self._finish("unhold_message", keys, args, timers=timers, hold_s=0.0))

    async def _repair_outbox_index(self, sender: SenderId) -> None:
        """Forget a sender whose outbox is empty, in three steps: (a) read its index token;
        (b) if the outbox is empty, move the fence (any push that read the fence before this
        can no longer append); (c) delete the entry only if its token is still the one read in
        (a) (a push that indexed itself since keeps it). A crash after (b) leaves the entry for
        the next visit; nothing can leave a non-empty outbox unindexed."""
        index = self.keys.outbox_index()
        token = await self.redis.hget(index, sender)
        if token is None:
            return
        keys = [self.keys.outbox(sender), self.keys.outbox_fence(sender)]
        if int(await self._run("outbox_fence", keys, [OUTBOX_TTL_MS])):
            await self._run("forget_if_unchanged", [index], [sender, _text(token)])


def _dead_letter(partition: int, dead_id: bytes | str, fields: dict[Any, Any]) -> DeadLetter:
    decoded = {_text(k): _text(v) for k, v in fields.items()}
    entry = StreamEntry(decoded["id"], EventId(decoded["eid"]), decoded["ev"])
    return DeadLetter(_text(dead_id), partition, entry, decoded["why"])


def _compact_digest(body_sha256: str) -> str:
    """What a claim keeps of the body's SHA-256 (hex): its first 18 bytes in base64, 24
    characters (a claim then fits Redis's small-string encoding). Anything else as given."""
    try:
        raw = bytes.fromhex(body_sha256)
    except ValueError:
        return body_sha256
    return base64.b64encode(raw[:18]).decode() if len(raw) == 32 else body_sha256


def _conforms(store: RedisStore) -> Store:
    """Never called: makes mypy prove that `RedisStore` implements the `Store` Protocol."""
    return store
