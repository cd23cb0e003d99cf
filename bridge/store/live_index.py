"""The index of live handoffs, so that `handoff-bridge status` lists them without SCAN.

One ZSET in its own slot (`Keys.live_handoffs`), member = sender, score = when the entry lapses
(as the record would). Every command here touches that one key. It is updated in the round trip
that follows a record write that changes the handoff's state, and the first write of each day
(`RedisStore.save_handoff`), so it may lag the records: an extra entry (a record no longer live)
is dropped by the reader once it has seen the record; an entry missing after a crash between the
two round trips comes back with the handoff's next state change (queued, agent joined) or the
next day's first write.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bridge.handoff import Handoff
from bridge.ids import SenderId
from bridge.store.keys import MAPPING_TTL_MS, Keys

Client = aioredis.Redis | RedisCluster


def is_live(fields: dict[str, str]) -> bool:
    return Handoff.from_fields(fields).active


def update_args(keys: Keys, sender: SenderId, live: bool) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of `scripts.LIVE_UPDATE` for the record just written (after the write: see
    the module's docstring)."""
    lapses = int(time.time() * 1000) + MAPPING_TTL_MS
    return [keys.live_handoffs()], [sender, 1 if live else 0, lapses, MAPPING_TTL_MS]


async def live_senders(client: Client, keys: Keys, limit: int) -> list[SenderId]:
    """Senders the index lists as live (expired entries dropped first), oldest entry first."""
    now = int(time.time() * 1000)
    await client.zremrangebyscore(keys.live_handoffs(), "-inf", now)
    found: list[Any] = await client.zrange(keys.live_handoffs(), 0, limit - 1)
    return [SenderId(m.decode() if isinstance(m, bytes) else m) for m in found]


async def drop(client: Client, keys: Keys, sender: SenderId) -> None:
    await client.zrem(keys.live_handoffs(), sender)
