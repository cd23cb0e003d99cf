"""Where an agent message's delivery starts when its first store step (claim the message, count
the attempt) was taken for it already: by a run's step, or by the door's enqueue (pure
decisions).

The door's enqueue takes that step with the append (`Store.enqueue_event(begin=)`) when it
hands the entry to its own resting consumer (`Relay.plan`): one round trip to Redis fewer per
event at a paced load. What it found is used only as far as it provably still holds:

- the claim and the counted attempt, when the entry is the message's (MINE) and no consumer can
  have worked it since: the consumer it is handed to is the one the step was planned for (a
  consumer's intake is its own; a new one reads the stream) and has not read or taken it yet.
  Otherwise the delivery claims it again, finds it its own, counts a second attempt and so
  looks in the tracker before pushing: safe, only slower.
- the sender's record read with the step, only when, besides, the consumer has rested since the
  plan without dispatching anything of that sender (whose lane was idle then) and the entry goes
  straight to its lane in the door's turn (`Relay._straight`): nothing of this process can have written the record between the read and
  the delivery. Other writers (the actions) race the delivery exactly as they race the relay's
  own step, and the save's version check catches them. Otherwise the record is read again.

And only soon after the step (`FRESH_S`): the step's claim was fenced by the partition's lease
in Redis, where the relay's own step is fenced right before its push; an entry kept waiting in
its lane (behind a stalled push) claims again rather than push on a fence that old.

A step the delivery does not start from still counted its attempt: the claim again counts a
second, one nearer the dead letters (`RELAY_MAX_ATTEMPTS`, 20); rare (a few in a thousand
events at saturation) and safe.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from bridge.relay.decisions import Failure
from bridge.store.base import HandoffRecord, MessageClaim, Started


@dataclass(frozen=True, slots=True)
class Begun:
    """An agent message's claim and attempt count, already taken by a run's store step or the
    door's enqueue: its delivery one at a time starts from them. With `failure`, the run pushed
    it (or may have) and that attempt failed: it is judged as a failed attempt (dead letter, or
    the next attempt, which looks in the tracker first); without, it was never pushed. With
    `record_read`, `record` is the sender's record to deliver it with (else it is read)."""

    ordinal: int
    attempt: int
    failure: Failure | None = None
    error: Exception | None = None
    record: HandoffRecord | None = None
    record_read: bool = False
    at: float = 0.0  # the loop's time when the door's enqueue took it (0: a run's)


# How long after the door's step its delivery may still start from it (see the docstring).
FRESH_S = 1.0


def fresh(begun: Begun | None, now: float) -> Begun | None:
    """The door's `begun` if its delivery may still start from it at `now`, else None."""
    if begun is None or now - begun.at > FRESH_S:
        return None
    return begun


class Use(Enum):
    """How much of what the door's enqueue found the delivery may start from."""

    NOTHING = "nothing"  # the delivery claims the message again
    ATTEMPT = "attempt"  # the claim and attempt; the record is read again
    WHOLE = "whole"  # the record too, if the entry goes straight to its lane now (else ATTEMPT)


def started_use(
    started: Started | None, *, same_consumer: bool, unread: bool, undisturbed: bool
) -> Use:
    """See the module's docstring. `same_consumer`: the entry is handed to the consumer the
    step was planned for; `unread`: which has not read or taken it; `undisturbed`: which has
    rested since, dispatching nothing of the sender."""
    if started is None or started.claim is not MessageClaim.MINE or started.attempts < 1:
        return Use.NOTHING
    if not (same_consumer and unread):
        return Use.NOTHING
    return Use.WHOLE if undisturbed else Use.ATTEMPT


def begun_from(started: Started | None, use: Use, at: float = 0.0) -> Begun | None:
    """The delivery's start, for a use `started_use` allowed; `at`: when the step was taken."""
    if started is None or use is Use.NOTHING:
        return None
    begun = Begun(started.ordinal, started.attempts, at=at)
    if use is Use.ATTEMPT or not started.record_read:
        return begun
    return replace(begun, record=started.record, record_read=True)
