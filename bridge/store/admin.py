"""What the operator commands read and repair in the store (`handoff-bridge status`, `forget`,
`dead-letters`). Reads fixed keys and indexes only: never KEYS or SCAN.

Functions over a `RedisStore` rather than `Store` methods: the relay and the actions never need
them, and the operator commands always run against a real Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bridge.eightbyeight.events import ChatEvent
from bridge.ids import ConversationId, SenderId
from bridge.store import live_index
from bridge.store.base import DeadLetter, HandoffRecord, partition_of
from bridge.store.keys import CONVERSATION_FIELD
from bridge.store.redis_store import RedisStore, _dead_letter, _guarded, _text

_PAGE = 500  # dead letters read per round trip when walking a partition's dead letters


@dataclass(frozen=True, slots=True)
class PartitionView:
    partition: int
    backlog: int  # events accepted and not yet delivered
    oldest_ms: int | None  # when the oldest of them was accepted
    held: int  # conversations whose events wait for their mapping
    dead: int  # dead letters
    owner: str | None  # the relay holding the lease


@dataclass(frozen=True, slots=True)
class Forgotten:
    record: bool
    conversations: tuple[ConversationId, ...]
    outbox_items: int
    dead_letters: int


def _now_ms() -> int:
    return int(time.time() * 1000)


@_guarded
async def live_handoffs(
    store: RedisStore, limit: int = 1000
) -> list[tuple[SenderId, HandoffRecord]]:
    """Live handoffs from the index; entries whose record is no longer live are dropped."""
    out: list[tuple[SenderId, HandoffRecord]] = []
    for sender in await live_index.live_senders(store, limit):
        record = await store.load_handoff(sender)
        if record is None or not live_index.is_live(record.fields):
            await live_index.drop(store, sender)
            continue
        out.append((sender, record))
    return out


@_guarded
async def partitions(store: RedisStore) -> list[PartitionView]:
    out: list[PartitionView] = []
    for p in range(store.partitions):
        k = store.keys
        async with store.redis.pipeline(transaction=False) as pipe:
            pipe.xlen(k.stream(p))
            pipe.xrange(k.stream(p), count=1)
            pipe.zcard(k.held(p))
            pipe.xlen(k.dead(p))
            pipe.get(k.partition_lease(p))
            backlog, first, held, dead, owner = await pipe.execute()
        oldest = int(_text(first[0][0]).split("-")[0]) if first else None
        out.append(PartitionView(p, int(backlog), oldest, int(held), int(dead),
                                 _text(owner) if owner else None))  # fmt: skip
    return out


@_guarded
async def live_relays(store: RedisStore) -> list[tuple[str, int]]:
    """Relay processes alive now, with when each lapses unless it beats again (epoch ms)."""
    found: list[Any] = await store.redis.zrangebyscore(
        store.keys.relays(), _now_ms(), "+inf", withscores=True
    )
    return [(_text(owner), int(score)) for owner, score in found]


@_guarded
async def outbox_depths(store: RedisStore) -> dict[SenderId, int]:
    out: dict[SenderId, int] = {}
    for sender in await store.outbox_senders():
        depth = int(await store.redis.llen(store.keys.outbox(sender)))
        if depth:
            out[sender] = depth
    return out


@_guarded
async def dead_letter(store: RedisStore, partition: int, dead_id: str) -> DeadLetter | None:
    if not 0 <= partition < store.partitions:
        return None
    try:
        found: list[Any] = (
            await store.redis.xrange(store.keys.dead(partition), dead_id, dead_id) or []
        )
    except Exception:  # not a stream id Redis accepts: unknown, like any other wrong id
        return None
    return _dead_letter(partition, found[0][0], found[0][1]) if found else None


@_guarded
async def purge_dead_letters(store: RedisStore, older_than_ms: int) -> int:
    """Drop dead letters parked more than `older_than_ms` ago; returns how many."""
    cutoff = max(0, _now_ms() - older_than_ms)
    removed = 0
    for p in range(store.partitions):
        removed += int(await store.redis.xtrim(store.keys.dead(p), minid=f"{cutoff}-0"))
    return removed


async def _dead_letters_of(
    store: RedisStore, partition: int, sender: SenderId, conversations: set[ConversationId]
) -> list[str]:
    """Ids of the partition's dead letters that belong to `sender` (one of its conversations,
    or a conversation whose reverse mapping names it)."""
    found: list[str] = []
    start = "-"
    while True:
        page: list[Any] = (
            await store.redis.xrange(store.keys.dead(partition), start, "+", count=_PAGE) or []
        )
        for dead_id, fields in page:
            letter = _dead_letter(partition, dead_id, fields)
            cid = _conversation_of(letter.entry.payload)
            if cid is not None and (cid in conversations or await _owner(store, cid) == sender):
                conversations.add(cid)
                found.append(letter.dead_id)
        if len(page) < _PAGE:
            return found
        start = "(" + _text(page[-1][0])


def _conversation_of(payload: str) -> ConversationId | None:
    try:
        return ChatEvent.from_json(payload).conversation_id
    except (ValueError, TypeError, KeyError):
        return None


async def _owner(store: RedisStore, cid: ConversationId) -> SenderId | None:
    raw = await store.redis.get(store.keys.conversation(cid))
    return SenderId(_text(raw)) if raw is not None else None


@_guarded
async def forget(store: RedisStore, sender: SenderId) -> Forgotten:
    """Erase what the store holds about one sender: its record, mapping (both directions), outbox,
    creation lease, index entries and the dead letters of its conversations."""
    k = store.keys
    raw_cid = await store.redis.hget(k.record(sender), CONVERSATION_FIELD)
    conversations = {ConversationId(_text(raw_cid))} if raw_cid is not None else set()
    dead = 0
    for p in range(store.partitions):
        ids = await _dead_letters_of(store, p, sender, conversations)
        if ids:
            dead += int(await store.redis.xdel(k.dead(p), *ids))
    outbox = int(await store.redis.llen(k.outbox(sender)))
    record = bool(await store.redis.exists(k.record(sender)))
    await store.redis.delete(k.record(sender), k.sender_lease(sender), k.outbox(sender))
    await store.redis.delete(k.outbox_fence(sender))
    for cid in conversations:
        # The digests of what the agent said to this user go too (one key per slot: Cluster).
        await store.redis.delete(k.delivered(partition_of(cid, store.partitions), cid))
        if await _owner(store, cid) == sender:
            await store.redis.delete(k.conversation(cid))
    await store.redis.hdel(k.outbox_index(), sender)
    await live_index.drop(store, sender)
    return Forgotten(record, tuple(sorted(conversations)), outbox, dead)
