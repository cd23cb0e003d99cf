"""What the recovery sweep keeps in Redis: its lease (one sweep at a time across processes),
its cursor over the live handoffs, and when it first found each missing item.

Functions over a `RedisStore`, like `admin.py`: only `serve`'s sweeper uses them. Every key is
in the `{recovery}` slot; each function is one command or one single-key script.
"""

from __future__ import annotations

import secrets

from bridge.ids import SenderId
from bridge.store import live_index
from bridge.store.redis_store import RedisStore, _guarded

_DAY_MS = 86_400_000

# KEYS: the lease. ARGV: the token, the TTL (ms). Renew only one's own lease.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: the lease. ARGV: the token. Release only one's own lease.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@_guarded
async def take_lease(store: RedisStore, ttl_ms: int) -> str | None:
    """The sweep lease's token, or None while another process sweeps."""
    token = secrets.token_hex(8)
    taken = await store.redis.set(store.keys.recovery_lease(), token, nx=True, px=ttl_ms)
    return token if taken else None


@_guarded
async def renew_lease(store: RedisStore, token: str, ttl_ms: int) -> bool:
    """False when the lease lapsed (another process may be sweeping now)."""
    script = store.redis.register_script(_RENEW)
    return bool(await script(keys=[store.keys.recovery_lease()], args=[token, ttl_ms]))


@_guarded
async def release_lease(store: RedisStore, token: str) -> None:
    script = store.redis.register_script(_RELEASE)
    await script(keys=[store.keys.recovery_lease()], args=[token])


@_guarded
async def next_senders(store: RedisStore, count: int) -> list[SenderId]:
    """Up to `count` live senders, starting where the previous sweep stopped (then from the
    start again), so that bounded sweeps take turns over every live handoff."""
    cursor_key = store.keys.recovery_cursor()
    start = int(await store.redis.get(cursor_key) or 0)
    senders = await live_index.live_senders(store, start + count)
    if start >= len(senders):  # past the end (handoffs ended meanwhile): from the start
        start = 0
    page = senders[start : start + count]
    following = start + count if len(page) == count else 0
    await store.redis.set(cursor_key, following, px=_DAY_MS)
    return page


@_guarded
async def first_seen(store: RedisStore, item: str, now_ms: int) -> int:
    """When a sweep first found `item` missing (now, if this is the first time)."""
    key = store.keys.recovery_seen()
    await store.redis.hsetnx(key, item, now_ms)
    await store.redis.pexpire(key, _DAY_MS)
    seen = await store.redis.hget(key, item)
    return int(seen) if seen is not None else now_ms


@_guarded
async def forget_seen(store: RedisStore, item: str) -> None:
    await store.redis.hdel(store.keys.recovery_seen(), item)
