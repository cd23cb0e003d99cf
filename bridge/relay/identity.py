"""One identity per agent message, the same whichever path delivers it.

Neither 8x8 API gives an agent message an id in its webhook event, and chat-v2's message list
has neither ids nor times (the Gateway's has `id` and `createdAt`, but the event does not, so the
two cannot be matched on them). What every path does see is the conversation and the text. So a
message is identified by

    (conversation id, digest of its text, ordinal)

where the ordinal is the message's rank among the agent messages *with the same text* in that
conversation: the agent's first "ok" is ("ok", 1), their second ("ok", 2). Two messages with the
same text are indistinguishable to the user, so what must be right is how many of each were
shown; the ordinal counts exactly that.

- A message found in 8x8's list (recovery) carries its ordinal, counted over the list in the
  order 8x8 wrote the messages. It travels as its event id (`message_event_id`), which every
  path keeps: stream, hold list, dead letters, replay.
- A webhook event is one more occurrence: before its first push it takes the lowest ordinal
  no entry has taken for its text, and keeps it (a retry, a take-over, a dead-letter replay of
  the same event id find the same one).

Where it is recorded: a hash per conversation in the partition's slot (`Keys.delivered`). A
message is *owned* by the entry that took it (before any push: `claim_message`) and
*delivered* once that entry is acknowledged (the same fenced script: `ack_message`). An entry
for a message owned by another entry, or delivered, is acknowledged without pushing. Every
path enqueues into the conversation's partition stream, which one lease holder consumes in
order, so taking, checking and recording cannot race. An ambiguous push (Rasa took it, the
answer was lost) is found in the tracker by its marker, which comes from the event id: the same
for the entry's retries, a take-over and a dead-letter replay, which are the only entries that
can own the message again.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.ids import EventId

# Event ids of messages that carry their identity: `msg:<digest>:<ordinal>`. 8x8's own event
# ids are opaque strings of letters, digits, `-` and `_` (spec, ID formats): never this shape.
_PREFIX = "msg:"
_MESSAGE_EVENT_ID = re.compile(r"msg:([0-9a-f]{32}):([1-9][0-9]{0,8})")
NEXT = 0  # the ordinal of a webhook event: the lowest one not yet delivered


@dataclass(frozen=True, slots=True)
class MessageIdentity:
    """An agent message within its conversation. `ordinal` is NEXT for a webhook event."""

    digest: str
    ordinal: int


def text_digest(text: str | None) -> str:
    """The digest of an agent message's text: NFC-normalised and stripped (the two APIs and the
    list may differ in Unicode form or surrounding whitespace, never in what the user reads).
    Attachments are not part of it: the list and the events describe them differently."""
    normal = unicodedata.normalize("NFC", text or "").strip()
    return hashlib.blake2b(normal.encode("utf-8"), digest_size=16).hexdigest()


def identity_of(event_id: str, event: ChatEvent) -> MessageIdentity | None:
    """The identity of an entry, None for anything but an agent message."""
    if event.kind is not EventKind.AGENT_MESSAGE:
        return None
    # Most entries are webhook events (8x8's ids): the prefix spares them the pattern.
    found = _MESSAGE_EVENT_ID.fullmatch(event_id) if event_id.startswith(_PREFIX) else None
    if found is not None:
        return MessageIdentity(found.group(1), int(found.group(2)))
    return MessageIdentity(text_digest(event.text), NEXT)


def message_event_id(identity: MessageIdentity) -> EventId:
    """The event id a message carrying its identity is enqueued under (recovery)."""
    if identity.ordinal < 1:
        raise ValueError("a listed message has an ordinal of 1 or more")
    return EventId(f"{_PREFIX}{identity.digest}:{identity.ordinal}")


def listed_identities(texts: Iterable[str | None]) -> list[MessageIdentity]:
    """The identities of a conversation's agent messages, given their texts oldest first (the
    whole conversation: ordinals count across its interactions, as the webhook's do)."""
    seen: dict[str, int] = {}
    out: list[MessageIdentity] = []
    for text in texts:
        digest = text_digest(text)
        seen[digest] = seen.get(digest, 0) + 1
        out.append(MessageIdentity(digest, seen[digest]))
    return out


def next_ordinal(delivered: set[int]) -> int:
    """The ordinal a webhook event takes: the lowest not delivered yet. (The store's script does
    the same in Lua; this is its specification, tested by the same table.)"""
    k = 1
    while k in delivered:
        k += 1
    return k
