"""Every Redis key the bridge uses, and every TTL, in one place.

Layout: `<prefix>hb:v1:{<tag>}:<name>`. The prefix is empty in production and unique per test
run; `hb:v1:` versions the schema so a future layout can live beside this one during a rollout.

Hash tags decide the Cluster slot, and every atomic step (Lua script or MULTI) touches one
slot only, with two documented exceptions (see `RedisStore.link` and the outbox index):

- `{s:<sender>}`: everything about one Rasa sender (handoff record, creation lease, outbox).
- `{c:<conversation>}`: the conversation -> sender direction of the mapping.
- `{p:<n>}`: everything one relay partition owns (dedupe claims, stream, attempts, lease,
  dead letters, hold lists and the held set), so the relay's fenced steps are single-slot.

Ids (senders, conversations, event ids) are used verbatim. They cannot collide with each other
or break the tag: the tag is the first `{...}` of the key, which is always ours because the
prefix may not contain braces, and no key name after an id contains `}`.

Keys without a TTL, and why:
- partition stream, attempts, held set, held index, hold lists: they hold accepted events that
  must not vanish while the relay is down; they are emptied entry by entry (ack, dead letter,
  unhold), so they are bounded by what is in flight, and Redis drops them when empty.
- dead letters: the record of what could not be delivered; kept until replayed or purged (the
  CLI lists them), and trimmed by age (DEAD_LETTER_MAX_AGE_S, logged) when new ones arrive.
- the outbox index: one global set; an expiry would forget senders with pending messages.
Everything per handoff (record, mapping, leases, outbox, dedupe claims) expires.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.ids import ConversationId, EventId, SenderId

SCHEMA = "hb:v1:"  # bump on an incompatible layout change; old keys then simply expire

DAY_MS = 24 * 3600 * 1000

# The mapping (both directions) and the handoff record: long enough for any real handoff and
# a returning user weeks later (who then reopens the same 8x8 conversation); finite so that
# abandoned senders do not accumulate forever. Refreshed by every link and save_handoff.
MAPPING_TTL_MS = 90 * DAY_MS

# A sender's outbox belongs to its handoff: it lives as long as the mapping would, refreshed by
# each push. Normally it drains within minutes of 8x8 coming back.
OUTBOX_TTL_MS = MAPPING_TTL_MS

# Dead letters older than this are trimmed (`DEAD_LETTER_MAX_AGE_S` overrides it in `serve`).
DEAD_LETTER_MAX_AGE_MS = 30 * DAY_MS

# Dedupe claims (`EVENT_DEDUPE_TTL_S`), the sender lease and the partition lease take their
# TTLs from the caller: they are settings of the webhook door and the relay.

# The record's version field (for compare-and-set); a reserved field name, kept short because
# it is stored in every record.
VERSION_FIELD = "_v"
CONVERSATION_FIELD = "conversation_id"  # the record field `link` sets


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

    # --- one conversation: {c:<conversation>} ---

    def conversation(self, conversation: ConversationId) -> str:
        """STRING: the sender a conversation belongs to (MAPPING_TTL_MS)."""
        return f"{self.base}{{c:{conversation}}}:sender"

    # --- global ---

    def outbox_index(self) -> str:
        """SET: senders whose outbox may be non-empty. Its own slot, so it is an index that may
        lag (never an authority): readers repair it from the outboxes. No TTL (see above)."""
        return f"{self.base}{{outboxes}}:senders"

    def relays(self) -> str:
        """ZSET: live relay processes, scored by when they lapse; lets each take a fair share
        of the partitions. TTL 10x the lease, refreshed by every heartbeat."""
        return f"{self.base}{{relays}}:live"

    def live_handoffs(self) -> str:
        """ZSET: senders whose handoff is live, scored by when the entry lapses (the record's
        TTL). Its own slot, an index that may lag (never an authority): readers drop entries
        whose record is no longer live. TTL MAPPING_TTL_MS, refreshed by every write."""
        return f"{self.base}{{handoffs}}:live"

    # --- one partition: {p:<n>} ---

    def claim(self, partition: int, event_id: EventId) -> str:
        """STRING: an 8x8 event id already accepted (EVENT_DEDUPE_TTL_S). In the partition's
        slot so that claim + append is one script; an event's conversation, hence partition,
        never changes across 8x8's retries."""
        return f"{self.base}{{p:{partition}}}:evt:{event_id}"

    def stream(self, partition: int) -> str:
        """STREAM: accepted events not yet delivered (fields `eid`, `ev`). No TTL."""
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

    def partition_keys(self, partition: int) -> list[str]:
        """The fixed keys of a partition (hold lists and claims are per id)."""
        return [
            self.stream(partition),
            self.attempts(partition),
            self.partition_lease(partition),
            self.dead(partition),
            self.held(partition),
            self.held_index(partition),
        ]
