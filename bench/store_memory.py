"""Redis memory per handoff, measured on the real Redis.

Creates N handoffs the way the bridge does (sender lease taken and released, link, record
saved, a few 8x8 events claimed, enqueued, relayed and acked) under a unique key prefix,
checks that only the documented keys live without a TTL, measures `MEMORY USAGE` of every key
a handoff leaves behind, prints bytes per handoff against the 1 KB target, and cleans up.

    python bench/store_memory.py [N]      # REDIS_URL, default redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
import uuid
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import RedisStore, open_store, partition_of

TARGET_BYTES = 1024
EVENTS_PER_HANDOFF = 3  # e.g. QUEUED, agent joined, one agent message
OWNER = "bench"
NO_TTL = {"stream", "attempts", "dead", "held", "heldby", "hold", "senders"}  # see keys.py


def record_fields(conversation: str) -> dict[str, str]:
    """A plausible record: a live handoff with an agent (names as the handoff module might)."""
    return {
        "state": "live",
        "conversation_id": conversation,
        "agent_name": "Agent Smith",
        "queue_name": "Support EN",
        "requested_ms": "1795616196207",
        "updated_ms": "1795616296207",
        "fallbacks": "0",
    }


@dataclass
class Handoff:
    sender: SenderId
    conversation: ConversationId
    events: list[EventId] = field(default_factory=list)


async def create(store: RedisStore, ttl_s: int) -> Handoff:
    h = Handoff(SenderId(str(uuid.uuid4())), ConversationId(str(uuid.uuid4())))
    token = await store.acquire_sender_lease(h.sender, 10_000)
    assert token, "fresh sender, free lease"
    await store.link(h.sender, h.conversation)
    assert await store.save_handoff(h.sender, record_fields(h.conversation), 1)
    await store.release_sender_lease(h.sender, token)
    partition = partition_of(h.conversation, store.partitions)
    for _ in range(EVENTS_PER_HANDOFF):
        event_id = EventId(str(uuid.uuid4()))
        digest = hashlib.sha256(event_id.encode()).hexdigest()  # the webhook hashes the body
        claimed = await store.claim_event(event_id, digest, settled=False)
        payload = '{"type":"x"}'
        assert await store.enqueue_event(partition, event_id, payload, ttl_s, claimed.at_ms)
        h.events.append(event_id)
    return h


async def relay_everything(store: RedisStore) -> None:
    for p in range(store.partitions):
        assert await store.acquire_partition(p, OWNER, 60_000)
        while entries := await store.read_events(p, 500):
            for entry in entries:
                await store.note_attempt(p, entry.entry_id)
                assert await store.ack_event(
                    p, entry.entry_id, OWNER, entry.event_id, claimed=entry.claimed
                )
        await store.release_partition(p, OWNER)


async def keys_without_ttl(client: aioredis.Redis, prefix: str) -> list[str]:
    return [
        k
        async for k in client.scan_iter(match=f"{prefix}*", count=1000)
        if await client.pttl(k) == -1
    ]


async def usage(client: aioredis.Redis, key: str) -> int:
    return int(await client.memory_usage(key, samples=0) or 0)


async def claim_hashes(client: aioredis.Redis, prefix: str) -> list[str]:
    """The webhook's claims (bridge/store/keys.py: `Keys.event_claims`): hashes shared by the
    event ids of a shard and time bucket, so they are counted whole, not per event."""
    return [k async for k in client.scan_iter(match=f"{prefix}*:claims:*", count=1000)]


async def measure(store: RedisStore, handoffs: list[Handoff]) -> tuple[float, float, int]:
    """Mean bytes per handoff: (record + both mapping directions, dedupe claims and enqueued
    markers); and how many sender leases are left (should be none)."""
    k, client = store.keys, store.redis
    mapping = claims = 0
    leases_left = 0
    for h in handoffs:
        mapping += await usage(client, k.record(h.sender))
        mapping += await usage(client, k.conversation(h.conversation))
        p = partition_of(h.conversation, store.partitions)
        for event_id in h.events:
            claims += await usage(client, k.enqueued(p, event_id))
        leases_left += int(await client.exists(k.sender_lease(h.sender)))
    for key in await claim_hashes(client, k.prefix):
        claims += await usage(client, key)
    n = len(handoffs)
    return mapping / n, claims / n, leases_left


async def expire_claims(store: RedisStore, handoffs: list[Handoff]) -> None:
    for h in handoffs:
        p = partition_of(h.conversation, store.partitions)
        await store.redis.delete(*(store.keys.enqueued(p, e) for e in h.events))
    hashes = await claim_hashes(store.redis, store.keys.prefix)
    for i in range(0, len(hashes), 500):
        await store.redis.delete(*hashes[i : i + 500])


async def cleanup(client: aioredis.Redis, prefix: str) -> None:
    batch = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
    for i in range(0, len(batch), 500):
        await client.delete(*batch[i : i + 500])


async def main(n: int) -> int:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"hbbench:{uuid.uuid4().hex[:12]}:"
    store = await open_store(url, prefix=prefix)
    store.event_dedupe_ttl_s = 86_400
    client = store.redis
    try:
        before = int((await client.info("memory"))["used_memory"])
        handoffs = [await create(store, ttl_s=86_400) for _ in range(n)]
        await relay_everything(store)
        after = int((await client.info("memory"))["used_memory"])
        bare = sorted(
            {k.rsplit("}:", 1)[1].split(":")[0] for k in await keys_without_ttl(client, prefix)}
        )
        mapping, claims, leases_left = await measure(store, handoffs)
        await expire_claims(store, handoffs)  # what the handoff costs once the claims lapsed
        steady = int((await client.info("memory"))["used_memory"])
    finally:
        await cleanup(client, prefix)
        await store.close()
    deltas = ((after - before) / n, (steady - before) / n)
    report(n, url, prefix, bare, leases_left, mapping, claims, deltas)
    ok = not (set(bare) - NO_TTL) and leases_left == 0 and mapping <= TARGET_BYTES
    return 0 if ok else 1


def report(
    n: int, url: str, prefix: str, bare: list[str], leases: int,
    mapping: float, claims: float, deltas: tuple[float, float],
) -> None:  # fmt: skip
    with_claims = mapping + claims
    print(f"handoffs: {n}  (redis {url}, prefix {prefix})")
    print(f"keys without TTL: {bare or 'none'}  (allowed: {sorted(NO_TTL)})")
    print(f"sender leases left: {leases}")
    print(f"record + mapping both ways (MEMORY USAGE): {mapping:6.1f} B/handoff", end="")
    print(f"  = {mapping / TARGET_BYTES:.2f} x the 1 KB target")
    print(
        f"  + {EVENTS_PER_HANDOFF} dedupe claims (first 24 h): {with_claims:6.1f} B/handoff", end=""
    )
    print(f"  = {with_claims / TARGET_BYTES:.2f} x the 1 KB target")
    # used_memory also counts the keyspace's hash tables and expiry entries, which MEMORY
    # USAGE leaves out; it is noisier (allocator, rehashing), so it is a cross-check.
    print(f"used_memory delta / handoff, with claims: {deltas[0]:6.1f} B", end="")
    print(f";  after the claims lapse: {deltas[1]:6.1f} B")


if __name__ == "__main__":
    sys.exit(asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)))
