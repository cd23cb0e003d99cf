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
"""

from __future__ import annotations

from dataclasses import dataclass
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


def begun_from(started: Started | None, use: Use) -> Begun | None:
    """The delivery's start, for a use `started_use` allowed."""
    if started is None or use is Use.NOTHING:
        return None
    if use is Use.ATTEMPT:
        return Begun(started.ordinal, started.attempts)
    return Begun(started.ordinal, started.attempts, record=started.record, record_read=True)
