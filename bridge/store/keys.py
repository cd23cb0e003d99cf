"""Every Redis key the bridge uses, and every TTL, in one place.

Layout: `<prefix>hb:v1:{<tag>}:<name>[:<id>]`. The prefix is empty in production and unique per
test run; `hb:v1:` versions the schema so a future layout can live beside this one during a
rollout. A key's *kind* is its `<name>`, the first segment after the hash tag.

The rule for where keys live (tests/store/test_cluster_safety.py checks it for every script
and transaction the store runs, on a single Redis and on a Redis Cluster):

1. Every atomic step (a Lua script, or a MULTI) touches keys of one hash slot only, all named
   in its KEYS. Two exceptions, on a single Redis only (where a script may touch any key),
   never on a Cluster: a step may also name a key of a kind in `SINGLE_REDIS_LEGACY`, data
   written by an earlier version that an upgrade must keep honouring; and a step named in
   `SINGLE_REDIS_JOINED` is two single-slot steps run as one, which on a Cluster run apart. A change that must span
   two slots is a sequence of single-slot steps in an order that is safe to interrupt, and its
   readers tolerate (or repair) the state left between two steps; `RedisStore.link` and the
   outbox index are the two such sequences, each with its crash analysis beside the code.
2. Every key has a TTL, or is listed in `OWNED` below with the store methods that empty it.

Hash tags decide the Cluster slot:

- `{s:<sender>}`: everything about one Rasa sender (handoff record, creation lease, outbox).
- `{c:<conversation>}`: the conversation -> sender direction of the mapping.
- `{e:<shard>}`: the webhook's claims of 8x8 event ids, a field each in a few hashes per shard
  (`claim_buckets`); `{e:<event id>}` in claims written before (one key per event id).
- `{p:<n>}`: everything one relay partition owns (stream, enqueued markers, attempts, lease,
  dead letters, hold lists and the held set), so the relay's fenced steps are single-slot.
- `{outboxes}`, `{relays}`: one deployment-wide key each.
- `{handoffs}`: the live-handoff index, all its shards in one slot.

Ids (senders, conversations, event ids) are used verbatim. They cannot collide with each other
or break the tag: the tag is the first `{...}` of the key, which is always ours because the
prefix may not contain braces, and no key name after an id contains `}`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import zlib
from dataclasses import dataclass
from typing import Final, NamedTuple

from bridge.ids import ConversationId, EventId, SenderId

SCHEMA = "hb:v1:"  # bump on an incompatible layout change; old keys then simply expire

DAY_MS = 24 * 3600 * 1000

# The mapping (both directions) and the handoff record: long enough for any real handoff and
# a returning user weeks later (who then reopens the same 8x8 conversation); finite so that
# abandoned senders do not accumulate forever. Refreshed by every link and save_handoff.
MAPPING_TTL_MS = 90 * DAY_MS

# A sender's outbox belongs to its handoff: it lives as long as the mapping would, refreshed by
# each push. Normally it drains within minutes of 8x8 coming back. The outbox fence lives as
# long: it must outlive any push still in flight when it moves (a fence that lapsed under such
# a push would let it append after the index forgot the sender).
OUTBOX_TTL_MS = MAPPING_TTL_MS

# Dead letters older than this are trimmed (`DEAD_LETTER_MAX_AGE_S` overrides it in `serve`).
DEAD_LETTER_MAX_AGE_MS = 30 * DAY_MS

# Enqueued markers (`EVENT_DEDUPE_TTL_S`), the sender lease and the partition lease take their
# TTLs from the caller: they are settings of the webhook door and the relay. Event claims take
# `EVENT_DEDUPE_TTL_S` from the store (`RedisStore.event_dedupe_ttl_s`): it also says where
# they live, which the door and the relay's settle must agree on.

# The webhook's claims are fields of hashes, CLAIM_SHARDS per time bucket, so that each hash
# stays small enough for Redis's compact listpack encoding (`hash-max-listpack-entries`: 128 in
# the sample redis.conf, 512 built in): a claim then costs less than half what a key of its own
# does. A bucket is a quarter of the dedupe TTL, so a claim outlives its TTL by at most a
# quarter, and a claim or a settle reads seven hashes (docs/security-webhook.md, "Where a claim
# lives").
CLAIM_SHARDS = 256
CLAIM_BUCKETS_PER_TTL = 4
MIN_CLAIM_BUCKET_MS = 60_000


class ClaimBuckets(NamedTuple):
    """Where the claim of one event id may live: the hashes of shard `shard` for buckets
    `first` .. `first + buckets - 1` (bucket = epoch ms // `width_ms`), oldest first, under the
    field `field`; a new claim goes into bucket `current`, which ends at `current_end_ms`.
    A NamedTuple rather than a frozen dataclass: as immutable, and a third of the cost to build
    (positionally), which every claim and every settle pays."""

    shard: int
    field: str
    width_ms: int
    first: int
    buckets: int
    current: int

    @property
    def current_end_ms(self) -> int:
        return (self.current + 1) * self.width_ms


def claim_bucket_ms(dedupe_ttl_s: int) -> int:
    """The width of a claim bucket: a quarter of the dedupe TTL, at least a minute."""
    return max(MIN_CLAIM_BUCKET_MS, round(dedupe_ttl_s * 1000 / CLAIM_BUCKETS_PER_TTL))


def claim_buckets(event_id: EventId, now_ms: int, dedupe_ttl_s: int) -> ClaimBuckets:
    """The buckets to read for `event_id` at `now_ms` (the caller's clock): from the one of
    `now - ttl - width` to the one of `now + width`. A claim goes into the bucket of its
    writer's clock and expires a TTL after that bucket ends (or after it was written, if
    later by Redis's clock), so any reader whose clock is within a bucket of the writer's
    finds it for at least the TTL."""
    width = claim_bucket_ms(dedupe_ttl_s)
    first = (now_ms - dedupe_ttl_s * 1000 - width) // width
    last = (now_ms + width) // width
    shard, field = claim_place(event_id)
    # Positional: keywords would cost as much again as building the tuple.
    return ClaimBuckets(shard, field, width, first, last - first + 1, now_ms // width)


@functools.lru_cache(maxsize=4096)
def claim_place(event_id: EventId) -> tuple[int, str]:
    """An event id's claim shard and field. Cached: an event's door and its delivery's settle
    (moments later, in the same process most often) each need them."""
    raw = event_id.encode("utf-8")
    # 9 bytes of SHA-256 in base64, 12 characters (each is paid once per claim): two event ids
    # meet by chance only in one shard and bucket and with odds of 2^-72 a pair.
    return zlib.crc32(raw) % CLAIM_SHARDS, base64.b64encode(
        hashlib.sha256(raw).digest()[:9]
    ).decode()


# The door's enqueue must follow its claim within this (server time), or it is refused and 8x8
# retries: the bound that lets a delivered event's marker go soon after the delivery.
MAX_CLAIM_TO_ENQUEUE_MS = 5_000
# How long a delivered event's enqueued marker is kept: the bound above plus room for clock skew
# between the Cluster nodes of the claim and of the partition.
ENQUEUED_AFTER_DELIVERY_MS = 15_000

# The record's version field (for compare-and-set); a reserved field name, kept short because
# it is stored in every record.
VERSION_FIELD = "_v"
CONVERSATION_FIELD = "conversation_id"  # the record field `link` sets
STATE_FIELD = "state"  # the record field whose change refreshes what lives beside the record
# The day (UTC) the keys beside the record were last refreshed (see SAVE_HANDOFF); reserved.
REFRESHED_FIELD = "_r"
DAY_S = 24 * 3600

# The live-handoff index is split over this many ZSETs (bridge/store/live_index.py) so that each
# stays in Redis's compact listpack encoding (up to zset-max-listpack-entries, 128 by default),
# which a single ZSET leaves past 128 live handoffs. Changing it would leave each sender's
# entry in a shard it no longer maps to, where its updates and drops miss it until it lapses.
LIVE_SHARDS = 128


def live_shard(sender: SenderId) -> int:
    """The shard of the live-handoff index that holds `sender`: stable across processes,
    restarts and versions (a sender's entry is written, dropped and moved in this shard)."""
    return zlib.crc32(sender.encode("utf-8")) % LIVE_SHARDS


# Each partition's armed timers are split over this many ZSETs (`Keys.timers`), for the same
# reason: a handoff keeps about two armed (queue timeout and reminder, or the two silences), so
# one set per partition leaves the listpack encoding past 64 handoffs in the partition. With 16
# partitions each shard stays a listpack up to about 12,000 live handoffs. Never change it: a
# conversation's armings would be in a shard its later armings and disarmings no longer reach,
# and with fewer shards in one that firing no longer reads (live timers that never fire).
TIMER_SHARDS = 16


def timer_shard(conversation: ConversationId) -> int:
    """The shard of its partition's timers that holds a conversation's armings. From the high
    half of the CRC: the partition (`partition_of`) takes the CRC modulo the partition count,
    so with 16 partitions the low bits would put every conversation of partition p in shard p."""
    return (zlib.crc32(conversation.encode("utf-8")) >> 16) % TIMER_SHARDS


@dataclass(frozen=True, slots=True)
class Owner:
    """Why a kind of key has no TTL, and which `RedisStore` methods empty it (the tests check
    that they exist). Redis deletes an emptied list, hash, set or sorted set by itself; a
    stream stays, which is why only fixed keys (one per partition) may be streams."""

    emptied_by: tuple[str, ...]
    why: str


# Every kind of key that lives without a TTL. Anything else the store writes must expire.
OWNED: Final[dict[str, Owner]] = {
    "stream": Owner(
        ("ack_event", "hold_event", "dead_letter"),
        "accepted events must not vanish while the relay is down; one fixed key per partition",
    ),
    "attempts": Owner(
        ("ack_event", "dead_letter", "unhold_event"),
        "a field per undelivered entry, deleted with its entry",
    ),
    "held": Owner(("unhold_event", "dead_letter"), "a member per conversation with held events"),
    "heldby": Owner(("unhold_event", "dead_letter"), "a field per held entry"),
    "hold": Owner(
        ("unhold_event", "dead_letter"),
        "held events, delivered or dead-lettered by their hold deadline (EVENT_HOLD_S)",
    ),
    "dead": Owner(
        ("replay_dead_letter",),
        "what could not be delivered, kept until replayed (expiring it would lose events); "
        "one fixed key per partition",
    ),
    "senders": Owner(
        ("outbox_peek", "outbox_pop"),
        "the outbox index: an expiry would forget senders with waiting messages; a sender "
        "leaves it when the drainer finds its outbox empty",
    ),
    "timers": Owner(
        ("fire_timers",),
        "armed timers, one member per kind and handoff in its set (arming again moves it); "
        "each leaves when it fires (into the stream), so the sets are bounded by the handoffs "
        "with a timer to come",
    ),
}


# Kinds of key that a step may name beside its own slot's keys on a single Redis only (see the
# rule above), and why. On a Cluster the store never passes them.
SINGLE_REDIS_LEGACY: Final[dict[str, str]] = {
    "claim": "event claims written before they were hashes (`Keys.event_claim`), honoured and "
    "settled with the new claim of the same event id in one script until they expire",
}


# Steps that join two single-slot steps in one script on a single Redis only (see the rule
# above): the step, and the kinds of key of its first part (the rest are of its second's slot).
# On a Cluster the store runs the two parts apart, in that order.
SINGLE_REDIS_JOINED: Final[dict[str, frozenset[str]]] = {
    # The door's claim (the event id's shard) and its enqueue (the partition): one round trip
    # fewer per event on the hot path; apart, the claim first (`admit_in_steps`).
    "admit_event": frozenset({"claims", "claim"}),
}


@dataclass(frozen=True, slots=True)
class Keys:
    """Builds key names under one prefix."""

    prefix: str = ""

    def __post_init__(self) -> None:
        # A brace in the prefix would become the hash tag and put every key in one slot.
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError("the store key prefix must not contain '{' or '}'")

    @property
    def base(self) -> str:
        return self.prefix + SCHEMA

    # --- one sender: {s:<sender>} ---

    def record(self, sender: SenderId) -> str:
        """HASH: the handoff record's flat fields plus the version (MAPPING_TTL_MS)."""
        return f"{self.base}{{s:{sender}}}:rec"

    def sender_lease(self, sender: SenderId) -> str:
        """STRING: the token of whoever is creating this sender's conversation (caller's TTL)."""
        return f"{self.base}{{s:{sender}}}:lease"

    def outbox(self, sender: SenderId) -> str:
        """LIST: user messages waiting for 8x8, oldest first (OUTBOX_TTL_MS)."""
        return f"{self.base}{{s:{sender}}}:outbox"

    def outbox_fence(self, sender: SenderId) -> str:
        """STRING: a counter bumped each time the outbox index forgets this sender; a push that
        began before the bump must start again (see `RedisStore.outbox_push`). OUTBOX_TTL_MS."""
        return f"{self.base}{{s:{sender}}}:fence"

    # --- one conversation: {c:<conversation>} ---

    def conversation(self, conversation: ConversationId) -> str:
        """STRING: the sender a conversation belongs to (MAPPING_TTL_MS)."""
        return f"{self.base}{{c:{conversation}}}:sender"

    # --- the webhook's claims of 8x8 event ids: {e:<shard>} ---

    def event_claims(self, shard: int, bucket: int) -> str:
        """HASH: the claims of the event ids of one shard first claimed in one time bucket
        (`claim_buckets`), field `ClaimBuckets.field` -> `<state><digest of the raw body>`,
        state `p` (claimed, not delivered yet) or `d` (delivered, enqueued in the claim's own
        step on a single Redis, or never to be enqueued). The
        digest is the first 18 bytes of the body's SHA-256 in base64. Expires EVENT_DEDUPE_TTL_S
        after its bucket ends. One claim per event id for the whole deployment, whatever the
        partition: a signature is usable once. A shard's buckets share the hash tag, so one
        script reads them all."""
        return f"{self.base}{{e:{shard}}}:claims:{bucket}"

    def event_claim(self, event_id: EventId) -> str:
        """STRING: an event id's claim as written before the claims were hashes (the same
        `<state><digest>`, or `<state>:<hex SHA-256>` earlier still), EVENT_DEDUPE_TTL_S. No
        longer written; on a single Redis still honoured and settled until it expires (on a
        Cluster it lives in another slot than the hashes: docs/security-webhook.md)."""
        return f"{self.base}{{e:{event_id}}}:claim"

    # --- global ---

    def outbox_index(self) -> str:
        """HASH: sender -> token of its latest push, for every sender whose outbox may be
        non-empty. Its own slot: an index written before each outbox and repaired from the
        outboxes (see `RedisStore.outbox_push`). No TTL (`OWNED`)."""
        return f"{self.base}{{outboxes}}:senders"

    def relays(self) -> str:
        """ZSET: live relay processes, scored by when they lapse; lets each take a fair share
        of the partitions. TTL 10x the lease, refreshed by every heartbeat."""
        return f"{self.base}{{relays}}:live"

    def live_handoffs(self, shard: int) -> str:
        """ZSET: one shard of the index of live handoffs (`live_shard` of the sender), member
        the sender, scored by when the entry lapses (the record's TTL). An index that may lag
        (never an authority): readers drop entries whose record is no longer live. All shards
        share the `{handoffs}` slot, so one script reads them all. TTL MAPPING_TTL_MS,
        refreshed by every write."""
        if not 0 <= shard < LIVE_SHARDS:
            raise ValueError(f"live-index shard {shard} not in 0..{LIVE_SHARDS - 1}")
        return f"{self.base}{{handoffs}}:live:{shard}"

    def live_handoffs_unsharded(self) -> str:
        """ZSET: the index of live handoffs as earlier versions wrote it, one key for all
        senders (same members and scores, same slot). Read with the shards and no longer
        written: a sender leaves it at its next index update, the rest lapse (its TTL is that
        of its newest entry)."""
        return f"{self.base}{{handoffs}}:live"

    def live_index(self) -> list[str]:
        """Every key of the live-handoff index, in the order its reader takes them: the
        unsharded key, then the shards."""
        return [self.live_handoffs_unsharded(), *map(self.live_handoffs, range(LIVE_SHARDS))]

    # --- one partition: {p:<n>} ---

    def enqueued(self, partition: int, event_id: EventId) -> str:
        """STRING: this event id is in the partition's stream already (EVENT_DEDUPE_TTL_S, cut
        to ENQUEUED_AFTER_DELIVERY_MS by the delivery's ack, which settles the claim first).
        Not the dedupe decision (that is `event_claim`): it makes the enqueue step idempotent,
        so a retry that finds its claim still pending cannot append the event twice. In the
        partition's slot so that the check and the append are one script. Written only
        behind a pending claim (a Cluster's two steps) and by the enqueues of recovery; on a
        single Redis the door's claim is done in the append's own script, with none."""
        return f"{self.base}{{p:{partition}}}:enq:{event_id}"

    def stream(self, partition: int) -> str:
        """STREAM: accepted events not yet delivered (fields `eid`, `ev`, and `c` on those the
        webhook enqueued behind a pending claim: see ENQUEUE_EVENT). No TTL."""
        return f"{self.base}{{p:{partition}}}:stream"

    def attempts(self, partition: int) -> str:
        """HASH: entry id -> delivery attempts so far; fields go with their entry. No TTL."""
        return f"{self.base}{{p:{partition}}}:attempts"

    def partition_lease(self, partition: int) -> str:
        """STRING: the relay worker owning this partition (caller's TTL, renewed)."""
        return f"{self.base}{{p:{partition}}}:lease"

    def dead(self, partition: int) -> str:
        """STREAM: dead letters (fields `id`, `eid`, `ev`, `why`). No TTL: kept until replayed."""
        return f"{self.base}{{p:{partition}}}:dead"

    def held(self, partition: int) -> str:
        """ZSET: conversation -> hold deadline (epoch ms) of conversations with held events."""
        return f"{self.base}{{p:{partition}}}:held"

    def held_index(self, partition: int) -> str:
        """HASH: held entry id -> its conversation, so an entry can be dead-lettered knowing
        only its id (as `Store.dead_letter` is called)."""
        return f"{self.base}{{p:{partition}}}:heldby"

    def hold(self, partition: int, conversation: ConversationId) -> str:
        """LIST: one conversation's held entries, in order (JSON `[entry_id, event_id,
        payload]`). Emptied by unhold/dead letter; Redis deletes it when empty."""
        return f"{self.base}{{p:{partition}}}:hold:{conversation}"

    def timers(self, partition: int, shard: int) -> str:
        """ZSET: one shard (`timer_shard` of the conversation) of the partition's armed timers,
        one member per kind and handoff, `<kind code>|<since_ms>|<conversation>`
        (bridge/store/timers.py), scored by when it is due (epoch ms): arming it again moves
        it. In the partition's slot: firing moves one into the stream in one script, which
        reads every shard. No TTL (see above)."""
        if not 0 <= shard < TIMER_SHARDS:
            raise ValueError(f"timer shard {shard} not in 0..{TIMER_SHARDS - 1}")
        return f"{self.base}{{p:{partition}}}:timers:{shard}"

    def timers_unsharded(self, partition: int) -> str:
        """ZSET: the partition's armed timers as earlier versions kept them, one key (members
        of either form: the one above, or a timer's JSON, one per arming). No longer written;
        firing still reads it, so it drains as its timers come due."""
        return f"{self.base}{{p:{partition}}}:timers"

    def timer_sets(self, partition: int) -> list[str]:
        """Every key of the partition's timers, in the order firing reads them: the unsharded
        key, then the shards."""
        shards = [self.timers(partition, shard) for shard in range(TIMER_SHARDS)]
        return [self.timers_unsharded(partition), *shards]

    def delivered(self, partition: int, conversation: ConversationId) -> str:
        """HASH: the agent messages of one conversation already delivered, fields
        `<text digest>:<ordinal>` (bridge/relay/identity.py). In the partition's slot so that
        recording is part of the fenced ack (a conversation's partition never changes).
        MAPPING_TTL_MS, refreshed by each record: it lives as long as the conversation's link."""
        return f"{self.base}{{p:{partition}}}:msgs:{conversation}"

    def partition_keys(self, partition: int) -> list[str]:
        """The fixed keys of a partition (hold lists and enqueued markers are per id)."""
        return [
            self.stream(partition),
            self.attempts(partition),
            self.partition_lease(partition),
            self.dead(partition),
            self.held(partition),
            self.held_index(partition),
            *self.timer_sets(partition),
        ]

    def doorbell(self) -> str:
        """PUB/SUB CHANNEL, not a key (named outside `base`, which only keys use): a
        partition's number, published by an enqueue whose partition another process consumes,
        so that it wakes at once (`RedisStore.bells`)."""
        return f"{self.prefix}hb:bell:v1"

    # --- recovery from 8x8's lists: {recovery} (bridge/store/recovery_state.py) ---

    def recovery_lease(self) -> str:
        """STRING: the token of the process sweeping now (one sweep at a time across
        processes). A short PX lease, renewed per conversation."""
        return f"{self.base}{{recovery}}:lease"

    def recovery_cursor(self) -> str:
        """STRING: where in the live-handoff index the next sweep starts, so that bounded
        sweeps take turns over every handoff. TTL one day, refreshed by each sweep."""
        return f"{self.base}{{recovery}}:cursor"

    def recovery_seen(self) -> str:
        """HASH: when a sweep first found each missing item (field: conversation and item),
        so that the horizon is measured across sweeps and processes. TTL one day, refreshed
        by each write; a found item's field is deleted once it is offered."""
        return f"{self.base}{{recovery}}:seen"
