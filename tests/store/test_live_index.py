"""The live-handoff index (bridge/store/live_index.py): a sender's entry in its shard, the
shards (and the unsharded key earlier versions wrote) read as one list, oldest entry first."""

from __future__ import annotations

import random
from collections import Counter
from itertools import islice
from typing import Any

import pytest

from bridge.ids import SenderId
from bridge.store import RedisStore, admin, live_index, recovery_state
from bridge.store.keys import LIVE_SHARDS, MAPPING_TTL_MS, Keys, live_shard
from tests.store.conftest import now_ms
from tests.support.store_rules import slot

# `scripts.LIVE_UPDATE` as the versions before the shards ran it (KEYS: the one index key), to
# write entries as they are in users' Redis before an upgrade.
EARLIER_LIVE_UPDATE = """
if ARGV[2] == '1' then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
"""

LIVE = {"state": "with_agent", "conversation_id": "conv-1"}
OVER = {"state": "bot"}


def senders_in(shard: int, count: int) -> list[SenderId]:
    """The first `count` senders named `in-<i>` that fall in `shard`."""
    found = (SenderId(f"in-{i}") for i in range(100_000))
    picked = list(islice((s for s in found if live_shard(s) == shard), count))
    assert len(picked) == count
    return picked


def one_per_shard(count: int) -> list[SenderId]:
    """`count` senders named `one-<i>`, each in a shard none of the others is in."""
    by_shard: dict[int, SenderId] = {}
    for i in range(100_000):
        by_shard.setdefault(live_shard(SenderId(f"one-{i}")), SenderId(f"one-{i}"))
        if len(by_shard) == count:
            return list(by_shard.values())
    raise AssertionError("not enough shards")


@pytest.fixture(params=["union", "merge"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each way the reader has (`scripts.LIVE_READ`): the one sort of every entry, whatever
    their number, or the merge of the shards, whatever the limit."""
    threshold = 1_000_000_000 if request.param == "union" else 0
    monkeypatch.setattr(live_index, "UNION_THRESHOLD", threshold)
    return str(request.param)


async def index(store: RedisStore, sender: SenderId, lapses: int) -> None:
    """An entry as `RedisStore.save_handoff` writes it, lapsing at `lapses` (ms)."""
    keys, _ = live_index.update_args(store.keys, sender, live=True)
    await store.scripts["live_update"](keys=keys, args=[sender, 1, lapses, MAPPING_TTL_MS])


async def index_as_before(store: RedisStore, sender: SenderId, lapses: int) -> None:
    """An entry as the versions before the shards wrote it."""
    key = store.keys.live_handoffs_unsharded()
    await store.redis.eval(EARLIER_LIVE_UPDATE, 1, key, sender, 1, lapses, MAPPING_TTL_MS)


async def members(store: RedisStore, key: str) -> set[str]:
    found: list[Any] = await store.redis.zrange(key, 0, -1)
    return {m.decode() if isinstance(m, bytes) else m for m in found}


async def where(store: RedisStore, sender: SenderId) -> list[str]:
    """The index keys that hold `sender`."""
    keys = store.keys.live_index()
    return [k for k in keys if await store.redis.zscore(k, sender) is not None]


# --- the shard function ---


@pytest.mark.parametrize(
    ("sender", "shard"),
    [("kim", 88), ("lou", 13), ("mem-s-gateway-0", 84), ("ü-sender", 123), ("", 0),
     ("3f0c1d7e-8a4b-4c2e-9d1f-6b5a4e3c2d1b", 20)],
)  # fmt: skip
def test_a_senders_shard_never_changes(sender: str, shard: int) -> None:
    """Pinned: an entry written by one version is updated and dropped by the next only if both
    put the sender in the same shard."""
    assert live_shard(SenderId(sender)) == shard


def test_ten_thousand_senders_fill_every_shard_within_the_compact_encoding() -> None:
    """Redis keeps a ZSET of up to 128 entries as a listpack (zset-max-listpack-entries)."""
    loads = Counter(live_shard(SenderId(f"mem-s-gateway-{i}")) for i in range(10_000))
    assert sorted(loads) == list(range(LIVE_SHARDS))
    assert max(loads.values()) <= 128


def test_every_key_of_the_index_is_in_one_slot() -> None:
    names = Keys("pre:").live_index()
    assert len(names) == LIVE_SHARDS + 1 and len(set(names)) == len(names)
    assert len({slot(k) for k in names}) == 1


# --- writes ---


async def test_a_live_record_is_indexed_in_its_shard_and_leaves_it_when_over(
    store: RedisStore,
) -> None:
    s = SenderId("kim")
    assert await store.save_handoff(s, LIVE, 0)
    shard = store.keys.live_handoffs(live_shard(s))
    assert await where(store, s) == [shard]
    assert await store.redis.pttl(shard) > MAPPING_TTL_MS - 60_000
    assert await live_index.live_senders(store, 10) == [s]
    assert await store.save_handoff(s, OVER, 1)
    assert await where(store, s) == []
    assert await live_index.live_senders(store, 10) == []


# --- reads ---


@pytest.mark.usefixtures("way")
async def test_senders_of_every_shard_are_listed_oldest_entry_first(store: RedisStore) -> None:
    spread = one_per_shard(6)
    base = now_ms() + 60_000
    lapses = {s: base + offset for s, offset in zip(spread, [50, 10, 40, 0, 30, 20], strict=True)}
    for s, at in lapses.items():
        await index(store, s, at)
    oldest_first = sorted(spread, key=lapses.__getitem__)
    assert await live_index.live_senders(store, 100) == oldest_first
    assert await live_index.live_senders(store, 4) == oldest_first[:4]
    assert await live_index.live_senders(store, 1) == oldest_first[:1]


@pytest.mark.usefixtures("way")
async def test_a_shard_read_page_by_page_merges_in_order(store: RedisStore) -> None:
    """A shard holding more entries than one page of the reader, interleaved with another's."""
    full, other = senders_in(5, 40), senders_in(6, 40)
    base = now_ms() + 60_000
    for i, (a, b) in enumerate(zip(full, other, strict=True)):
        await index(store, a, base + 2 * i)
        await index(store, b, base + 2 * i + 1)
    merged = [s for pair in zip(full, other, strict=True) for s in pair]
    assert await live_index.live_senders(store, 30) == merged[:30]
    assert await live_index.live_senders(store, 1000) == merged


@pytest.mark.usefixtures("way")
@pytest.mark.parametrize("limit", [1, 7, 150, 1000])
async def test_any_mix_of_shards_and_times_is_listed_as_one_sorted_list(
    store: RedisStore, limit: int
) -> None:
    """The merge against a sort: 300 senders at random times (some the same), a quarter of
    them in the unsharded key."""
    rng = random.Random(limit)
    base = now_ms() + 60_000
    lapses = {SenderId(f"mix-{i}"): base + rng.randrange(200) for i in range(300)}
    for i, (s, at) in enumerate(lapses.items()):
        await (index_as_before if i % 4 == 0 else index)(store, s, at)
    ordered = sorted(lapses, key=lambda s: (lapses[s], s))
    assert await live_index.live_senders(store, limit) == ordered[:limit]


@pytest.mark.usefixtures("way")
async def test_entries_of_the_same_time_are_listed_by_sender(store: RedisStore) -> None:
    spread = sorted(one_per_shard(5))
    at = now_ms() + 60_000
    for s in reversed(spread):
        await index(store, s, at)
    assert await live_index.live_senders(store, 10) == spread


@pytest.mark.usefixtures("way")
async def test_lapsed_entries_are_dropped_before_the_read(store: RedisStore) -> None:
    stale, legacy_stale, live = one_per_shard(3)
    await index(store, stale, now_ms() - 1_000)
    await index_as_before(store, legacy_stale, now_ms() - 1_000)
    await index(store, live, now_ms() + 60_000)
    assert await live_index.live_senders(store, 10) == [live]
    assert await where(store, stale) == [] and await where(store, legacy_stale) == []


@pytest.mark.usefixtures("way")
async def test_a_limit_of_nothing_lists_nothing(store: RedisStore) -> None:
    await index(store, SenderId("kim"), now_ms() + 60_000)
    assert await live_index.live_senders(store, 0) == []


# --- the unsharded key earlier versions wrote ---


@pytest.mark.usefixtures("way")
async def test_entries_written_before_the_shards_are_listed_with_theirs(
    store: RedisStore,
) -> None:
    old, new = senders_in(3, 3), senders_in(4, 2)
    base = now_ms() + 60_000
    await index_as_before(store, old[0], base + 0)
    await index(store, new[0], base + 1)
    await index_as_before(store, old[1], base + 2)
    await index_as_before(store, old[2], base + 3)
    await index(store, new[1], base + 4)
    expected = [old[0], new[0], old[1], old[2], new[1]]
    assert await live_index.live_senders(store, 10) == expected


async def test_the_unsharded_key_drains_as_handoffs_change_state(store: RedisStore) -> None:
    moves, ends, stays = SenderId("moves"), SenderId("ends"), SenderId("stays")
    for s in (moves, ends, stays):
        assert await store.save_handoff(s, {"state": "queued"}, 0)
        await live_index.drop(store, s)  # indexed as before the upgrade instead:
        await index_as_before(store, s, now_ms() + MAPPING_TTL_MS)
    unsharded = store.keys.live_handoffs_unsharded()
    assert await members(store, unsharded) == {moves, ends, stays}
    assert await store.save_handoff(moves, LIVE, 1)  # agent joined: the entry moves
    assert await where(store, moves) == [store.keys.live_handoffs(live_shard(moves))]
    assert await store.save_handoff(ends, OVER, 1)  # over: out of both
    assert await where(store, ends) == []
    assert await members(store, unsharded) == {stays}
    assert set(await live_index.live_senders(store, 10)) == {moves, stays}


@pytest.mark.usefixtures("way")
async def test_a_sender_in_both_keys_is_listed_once_at_its_oldest_entry(
    store: RedisStore,
) -> None:
    """While a process of an earlier version still writes the unsharded key."""
    first, twice, last = one_per_shard(3)
    base = now_ms() + 60_000
    await index(store, first, base)
    await index(store, twice, base + 20)
    await index_as_before(store, twice, base + 10)
    await index(store, last, base + 30)
    assert await live_index.live_senders(store, 10) == [first, twice, last]
    assert await live_index.live_senders(store, 2) == [first, twice]


async def test_a_drop_removes_the_sender_from_its_shard_and_the_unsharded_key(
    store: RedisStore,
) -> None:
    s, kept = one_per_shard(2)
    at = now_ms() + 60_000
    await index(store, s, at)
    await index_as_before(store, s, at)
    await index(store, kept, at)
    await live_index.drop(store, s)
    assert await where(store, s) == []
    assert await live_index.live_senders(store, 10) == [kept]


async def test_status_drops_entries_whose_record_is_no_longer_live(store: RedisStore) -> None:
    live, over, legacy_over = SenderId("live"), SenderId("over"), SenderId("legacy-over")
    assert await store.save_handoff(live, LIVE, 0)
    for s in (over, legacy_over):
        assert await store.save_handoff(s, OVER, 0)
    await index(store, over, now_ms() + 60_000)  # as after a crash between the two writes
    await index_as_before(store, legacy_over, now_ms() + 60_000)
    assert [s for s, _ in await admin.live_handoffs(store)] == [live]
    assert await where(store, over) == [] and await where(store, legacy_over) == []


# --- the recovery sweep's pages ---


@pytest.mark.usefixtures("way")
async def test_recovery_pages_take_turns_over_shards_and_the_unsharded_key(
    store: RedisStore,
) -> None:
    spread = one_per_shard(4)
    legacy = SenderId("legacy")
    base = now_ms() + 60_000
    for i, s in enumerate(spread):
        await index(store, s, base + 2 * i)
    await index_as_before(store, legacy, base + 3)
    order = [spread[0], spread[1], legacy, spread[2], spread[3]]
    assert await recovery_state.next_senders(store, 2) == order[0:2]
    assert await recovery_state.next_senders(store, 2) == order[2:4]
    assert await recovery_state.next_senders(store, 2) == order[4:5]
    assert await recovery_state.next_senders(store, 2) == order[0:2]


# --- what the shards are for ---


async def test_each_shard_stays_compact(store: RedisStore, backend_url: str | None) -> None:
    """300 live handoffs: one ZSET would be a skiplist past 128; each shard is a listpack."""
    if backend_url is None:
        pytest.skip("the embedded Redis (fakeredis) has no OBJECT ENCODING")
    at = now_ms() + 60_000
    senders = [SenderId(f"many-{i}") for i in range(300)]
    for s in senders:
        await index(store, s, at)
    assert await live_index.live_senders(store, 1000) == sorted(senders)
    shards = {store.keys.live_handoffs(live_shard(s)) for s in senders}
    encodings = {await store.redis.object("encoding", k) for k in shards}
    assert encodings in ({b"listpack"}, {"listpack"})
