"""Lanes: which units of a read batch may be worked at the same time (pure decisions).

A partition's consumer reads a batch of entries of many conversations. Order is owed per
conversation only, yet worked one unit after another every entry waits behind the pushes,
claims and acks of every conversation read before it: at a paced load that queue, not Rasa,
was the tail of the latency. So the units of a batch (`runs.plan_units`) go into lanes that
run concurrently, each lane working its units one after another in stream order:

- one lane per sender: two conversations of one user (a conversation and the one reopened
  after it) share the handoff record and the Rasa tracker, so their entries never overtake
  each other even though only each conversation's own order is owed;
- a conversation whose sender is not known (its entries are held until its link exists, or
  it is held already): a lane of its own, so its holds keep their order;
- an entry that cannot be read belongs to no conversation: a lane of its own.

`round_end` says what the round as a whole comes to from how each of its lanes ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import IntEnum

from bridge.ids import ConversationId, SenderId

# What a lane is keyed by: a sender, a conversation without a known sender, or (for an entry
# that cannot be read) the unit's own index.
_Key = tuple[str, str | int]


def plan_lanes(
    units: Sequence[Sequence[int]],
    conversations: Sequence[ConversationId | None],
    senders: Mapping[ConversationId, SenderId],
) -> list[list[int]]:
    """The units (by index) grouped into lanes, each lane in stream order, lanes in the order
    of their first unit. `conversations`: each entry's conversation (None: it cannot be read);
    a unit's entries are all of one conversation (`runs.plan_units`). `senders`: the known
    senders of the batch's conversations (a held conversation's is left out: it waits)."""
    lanes: dict[_Key, list[int]] = {}
    for u, unit in enumerate(units):
        lanes.setdefault(_key(u, conversations[unit[0]], senders), []).append(u)
    return list(lanes.values())


def _key(
    unit: int, conversation: ConversationId | None, senders: Mapping[ConversationId, SenderId]
) -> _Key:
    if conversation is None:
        return ("unread", unit)
    sender = senders.get(conversation)
    if sender is None:
        return ("conversation", conversation)
    return ("sender", sender)


class LaneEnd(IntEnum):
    """How a lane ended, from the least to the most that the round must answer for."""

    DONE = 0  # every unit worked
    STOPPED = 1  # the relay is stopping, or this consumer is no longer the partition's
    LEASE = 2  # the lease may lapse before a push ends: wait for the supervisor's renewal
    LOST = 3  # the lease was lost: the consumer ends, the next holder takes over


def round_end(ends: Iterable[LaneEnd]) -> LaneEnd:
    """The round's end: the gravest of its lanes' (an empty batch is DONE)."""
    return max(ends, default=LaneEnd.DONE)
