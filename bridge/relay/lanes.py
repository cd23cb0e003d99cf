"""Lanes: which units of work may be worked at the same time (pure decisions).

A partition's consumer reads batches of entries of many conversations. Order is owed per
conversation only, yet worked one unit after another every entry waits behind the pushes,
claims and acks of every conversation read before it: at a paced load that queue, not Rasa,
was the tail of the latency. So the units of a batch (`runs.plan_units`) go into lanes that
run concurrently, each lane working its units one after another in stream order. A unit's lane
is named by its key (`lane_keys`):

- one lane per sender: two conversations of one user (a conversation and the one reopened
  after it) share the handoff record and the Rasa tracker, so their entries never overtake
  each other even though only each conversation's own order is owed;
- a conversation whose sender is not known (its entries are held until its link exists, or
  it is held already): a lane of its own, so its holds keep their order;
- an entry that cannot be read belongs to no conversation: a lane of its own.

Lanes outlive the batch that started them (`pipeline.py`): a later batch's unit joins the
running lane of its key, behind what that lane already has. A conversation's key can change
while some of it is in flight (its sender became known, or it got held): then the unit waits
for the lane its conversation is in to end before it joins its own (`waits`), so a
conversation is never in two lanes at once.

`round_end` says what the lanes that ended come to, from how each of them ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum

from bridge.ids import ConversationId, SenderId

# What a lane is keyed by: a sender, a conversation without a known sender, or (for an entry
# that cannot be read) the entry's own id.
Key = tuple[str, str]


def lane_keys(
    units: Sequence[Sequence[int]],
    conversations: Sequence[ConversationId | None],
    senders: Mapping[ConversationId, SenderId],
    entry_ids: Sequence[str],
) -> list[Key]:
    """Each unit's lane key. `units`: a batch's units of work (entry indexes; a unit's entries
    are all of one conversation, `runs.plan_units`); `conversations`: each entry's (None: it
    cannot be read); `senders`: the known senders of the batch's conversations (a held
    conversation's is left out: it waits); `entry_ids`: each entry's stream id."""
    return [_key(conversations[unit[0]], senders, entry_ids[unit[0]]) for unit in units]


def _key(
    conversation: ConversationId | None, senders: Mapping[ConversationId, SenderId], entry_id: str
) -> Key:
    if conversation is None:
        return ("unread", entry_id)
    sender = senders.get(conversation)
    if sender is None:
        return ("conversation", conversation)
    return sender_key(sender)


def sender_key(sender: SenderId) -> Key:
    """The lane of every conversation of a known sender."""
    return ("sender", sender)


def waits(
    keys: Sequence[Key],
    conversations: Sequence[ConversationId | None],
    in_flight: Mapping[ConversationId, Key],
) -> list[Key | None]:
    """For each unit of a batch, in stream order (its lane key and its conversation), the key of
    the running lane it must wait for before it joins its own: the lane its conversation is in
    flight in, when that is not its own. None: it joins its lane (running or new) at once.
    `in_flight`: each conversation of the running lanes, with its lane's key. The units before
    it count as dispatched, and a lane waited for as ended (with every conversation in it)."""
    flight = dict(in_flight)
    out: list[Key | None] = []
    for key, conversation in zip(keys, conversations, strict=True):
        wait = None
        if conversation is not None:
            current = flight.get(conversation, key)
            if current != key:
                wait = current
                flight = {c: k for c, k in flight.items() if k != current}
            flight[conversation] = key
        out.append(wait)
    return out


class LaneEnd(IntEnum):
    """How a lane ended, from the least to the most that the consumer must answer for."""

    DONE = 0  # every unit worked
    STOPPED = 1  # the relay is stopping, or this consumer is no longer the partition's
    LEASE = 2  # the lease may lapse before a push ends: wait for the supervisor's renewal
    LOST = 3  # the lease was lost: the consumer ends, the next holder takes over


def round_end(ends: Iterable[LaneEnd]) -> LaneEnd:
    """What lanes that ended come to: the gravest of their ends (none: DONE)."""
    return max(ends, default=LaneEnd.DONE)
