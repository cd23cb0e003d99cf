"""The index of live handoffs, so that `handoff-bridge status` and the recovery sweep list them
without SCAN.

`LIVE_SHARDS` ZSETs (`Keys.live_handoffs(n)`), member = sender, score = when the entry lapses
(as the record would); a sender's entry is in shard `live_shard(sender)`. One ZSET would do,
but past 128 members (zset-max-listpack-entries) Redis turns it from a compact listpack into a
skiplist and a hash table; split 128 ways, each shard stays a listpack up to about 12,000 live
handoffs (the fullest shard then nears 128; shards past it turn one by one, and only they cost
more). At 1,000 live handoffs the index costs 42 B per handoff, 118 B as one ZSET (the bench's
memory phase). A sender longer than 64 bytes (zset-max-listpack-value) turns its shard too.
All shards share the `{handoffs}` hash tag: one slot, so one script writes a sender's shard or
reads them all, on a Cluster too.

Written in the round trip that follows a record write that changes the handoff's state, and the
first write of each day (`RedisStore.save_handoff`), so it may lag the records: an extra entry
(a record no longer live) is dropped by the reader once it has seen the record; an entry missing
after a crash between the two round trips comes back with the handoff's next state change
(queued, agent joined) or the next day's first write.

Read in one script over every shard (`scripts.LIVE_READ`): lapsed entries dropped, the shards
merged by score (oldest entry first), the first `limit` returned. It costs more than one
ZSET's ZRANGE did: with 16,000 entries on the bench machine, about 1.3 ms for 50 senders and
13 ms for all of them, against 0.2 and 1.5 ms (each call as the caller waits for it, a
script holding Redis for most of it). The recovery sweep's pages come near the second when it
walks the last of that many live handoffs (`recovery_state.next_senders` reads up to its page's
end).

Upgrade: earlier versions kept the whole index in one key (`Keys.live_handoffs_unsharded`).
The reader merges it with the shards, and every update or drop of a sender also removes the
sender from it, so it drains as handoffs change state; what is left lapses (the key expires
with its newest entry). While a process of an earlier version still runs, a sender may be in
both (listed once), and that process lists only the unsharded key's entries.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from bridge.handoff import Handoff
from bridge.ids import SenderId
from bridge.store.keys import MAPPING_TTL_MS, Keys, live_shard

if TYPE_CHECKING:
    from bridge.store.redis_store import RedisStore

# `scripts.LIVE_READ` sorts the whole index in one command when it holds at most this many
# entries per sender asked for, and merges the shards in Lua otherwise: where the two cost the
# same (about 0.6 us an entry sorted, 2.4 us a sender merged), so a read costs the cheaper.
UNION_THRESHOLD = 4


def is_live(fields: dict[str, str]) -> bool:
    return Handoff.from_fields(fields).active


def update_args(keys: Keys, sender: SenderId, live: bool) -> tuple[list[str], list[str | int]]:
    """KEYS and ARGV of `scripts.LIVE_UPDATE` for the record just written (after the write: see
    the module's docstring)."""
    lapses = int(time.time() * 1000) + MAPPING_TTL_MS
    index = [keys.live_handoffs(live_shard(sender)), keys.live_handoffs_unsharded()]
    return index, [sender, 1 if live else 0, lapses, MAPPING_TTL_MS]


async def live_senders(store: RedisStore, limit: int) -> list[SenderId]:
    """Up to `limit` senders the index lists as live (lapsed entries dropped first), oldest
    entry first."""
    now = int(time.time() * 1000)
    args: list[str | int] = [now, limit, UNION_THRESHOLD]
    found: list[Any] = await store._run("live_read", store.keys.live_index(), args)
    return [SenderId(m.decode() if isinstance(m, bytes) else m) for m in found]


async def drop(store: RedisStore, sender: SenderId) -> None:
    await store._run("live_update", *update_args(store.keys, sender, live=False))
