"""The index of live handoffs, so that `handoff-bridge status` lists them without SCAN.

One ZSET in its own slot (`Keys.live_handoffs`), member = sender, score = when the entry lapses
(as the record would). Every command here touches that one key. The index may lag the records
(they live in other slots): an entry is added *before* a record becomes live and removed
*after* it stops being live, so a crash in between can only leave an extra entry, which the
reader drops once it has seen the record.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis

from bridge.handoff import Handoff
from bridge.ids import SenderId
from bridge.store.keys import MAPPING_TTL_MS, Keys


def is_live(fields: dict[str, str]) -> bool:
    return Handoff.from_fields(fields).active


async def before_save(client: aioredis.Redis, keys: Keys, sender: SenderId, live: bool) -> None:
    if live:
        now = int(time.time() * 1000)
        async with client.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.live_handoffs(), {sender: now + MAPPING_TTL_MS})
            pipe.pexpire(keys.live_handoffs(), MAPPING_TTL_MS)
            await pipe.execute()


async def after_save(client: aioredis.Redis, keys: Keys, sender: SenderId, live: bool) -> None:
    if not live:
        await client.zrem(keys.live_handoffs(), sender)


async def live_senders(client: aioredis.Redis, keys: Keys, limit: int) -> list[SenderId]:
    """Senders the index lists as live (expired entries dropped first), oldest entry first."""
    now = int(time.time() * 1000)
    await client.zremrangebyscore(keys.live_handoffs(), "-inf", now)
    found: list[Any] = await client.zrange(keys.live_handoffs(), 0, limit - 1)
    return [SenderId(m.decode() if isinstance(m, bytes) else m) for m in found]


async def drop(client: aioredis.Redis, keys: Keys, sender: SenderId) -> None:
    await client.zrem(keys.live_handoffs(), sender)
