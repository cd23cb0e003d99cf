"""The relay's decisions as pure functions: no I/O, no clock reads, no randomness.

`Relay` (leases, consumers) and `Deliverer` (one entry) only carry these out; the tables in
tests/relay/test_decisions.py pin every rule down.

- Partition share: each live relay takes at most ceil(partitions / live relays).
- Lease round: renew what we hold up to the share (renewals first), give back the rest, then
  take free partitions up to the share.
- A lease grant tells the consumer's fate: start one, keep it, restart it (the lease had lapsed
  and was taken again: another relay may have worked the partition, so the consumer's memory is
  stale), or stop it (another relay holds the lease).
- "May I still push": only before a safety share of the lease's lifetime has passed since the
  renewal was *asked for*, so a stalled renewal stops pushes before another relay can take over.
- An entry: held behind what is already held for its conversation, held when its conversation
  has no sender yet, else delivered. A held conversation is released when its sender is known,
  given up at its deadline, else kept waiting.
- A failed attempt: retried after a backoff, or dead-lettered when the error is permanent or the
  budget (attempts, age) is spent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

# A consumer pushes only within this share of its lease's lifetime since the last renewal.
SAFETY = 0.8

# What `acquire_partition` answers.
LOST = 0  # another relay holds the lease
FRESH = 1  # newly taken
RENEWED = 2  # renewed: we held it all along


def fair_share(partitions: int, live_relays: int) -> int:
    """How many partitions one relay may hold: ceil(partitions / live), at least 1 relay."""
    return math.ceil(partitions / max(1, live_relays))


@dataclass(frozen=True, slots=True)
class LeasePlan:
    renew: tuple[int, ...]  # held and kept: renewed first, so they never wait behind the rest
    give_back: tuple[int, ...]  # held beyond the share
    take_up_to: int  # how many we may hold after taking free ones


def plan_leases(
    owned: list[int], partitions: int, live_relays: int, *, stopping: bool
) -> LeasePlan:
    """One supervisor round. Stopping: keep renewing what we hold (in-flight deliveries finish
    under a valid lease), give nothing back here and take nothing new."""
    held = tuple(sorted(owned))
    if stopping:
        return LeasePlan(renew=held, give_back=(), take_up_to=0)
    share = fair_share(partitions, live_relays)
    return LeasePlan(renew=held[:share], give_back=held[share:], take_up_to=share)


class ConsumerAction(StrEnum):
    START = "start"  # no running consumer, lease granted
    KEEP = "keep"  # our consumer runs and the lease was renewed
    RESTART = "restart"  # our consumer runs but the lease was taken afresh: its memory is stale
    STOP = "stop"  # another relay holds the lease: stop before we deliver twice
    NONE = "none"  # not ours, nothing running


def on_grant(grant: int, consumer_running: bool, stopping: bool = False) -> ConsumerAction:
    """What to do with a partition's consumer after asking for its lease. A stopping relay
    starts nothing: it only lets a running consumer finish the delivery in flight."""
    if grant == LOST:
        return ConsumerAction.STOP if consumer_running else ConsumerAction.NONE
    if not consumer_running:
        return ConsumerAction.NONE if stopping else ConsumerAction.START
    if grant == FRESH:  # our lease had lapsed: the consumer's memory is stale
        return ConsumerAction.STOP if stopping else ConsumerAction.RESTART
    return ConsumerAction.KEEP


def push_deadline(asked_at_s: float, lease_ttl_ms: int) -> float:
    """Until when a consumer may push, counted from *before* the lease was asked for."""
    return asked_at_s + lease_ttl_ms / 1000 * SAFETY


def may_push(now_s: float, deadline_s: float | None) -> bool:
    return deadline_s is not None and now_s < deadline_s


class Route(StrEnum):
    HOLD_BEHIND = "hold_behind"  # its conversation already has held entries: keep the order
    HOLD = "hold"  # no sender known yet: park it until the mapping exists
    DELIVER = "deliver"


def route_entry(conversation_held: bool, sender_known: bool) -> Route:
    if conversation_held:
        return Route.HOLD_BEHIND
    return Route.DELIVER if sender_known else Route.HOLD


class HeldFate(StrEnum):
    WAIT = "wait"
    RELEASE = "release"  # the sender is known now: deliver the held entries in order
    GIVE_UP = "give_up"  # the deadline passed with no sender: dead letters


def held_fate(sender_known: bool, now_ms: int, deadline_ms: int) -> HeldFate:
    if sender_known:
        return HeldFate.RELEASE
    return HeldFate.GIVE_UP if now_ms >= deadline_ms else HeldFate.WAIT


def hold_deadline(accepted_ms: int, hold_s: float) -> int:
    """A conversation's held entries wait this long after the first one was accepted."""
    return accepted_ms + int(hold_s * 1000)


class Failure(StrEnum):
    PERMANENT = "permanent"  # Rasa refused it for good (a 4xx that retrying cannot fix)
    RETRYABLE = "retryable"  # Rasa or Redis unavailable, timeouts, 5xx, 404/409/429...
    INTERNAL = "internal"  # a bug of ours: retried, so one bad entry cannot wedge a partition


@dataclass(frozen=True, slots=True)
class AfterFailure:
    dead_letter: str | None  # the reason, when the entry goes to the dead letters
    retry_in_s: float = 0.0


def after_failure(
    failure: Failure,
    attempt: int,
    age_s: float,
    *,
    max_attempts: int,
    max_age_s: float,
    backoff_s: float,
) -> AfterFailure:
    """Retry after `backoff_s`, or dead-letter (with the reason)."""
    if failure is Failure.PERMANENT:
        return AfterFailure("rejected_by_rasa")
    if attempt >= max_attempts:
        return AfterFailure("internal_error" if failure is Failure.INTERNAL else "max_attempts")
    if failure is Failure.RETRYABLE and age_s >= max_age_s:
        return AfterFailure("max_age")
    return AfterFailure(None, backoff_s)


def backoff(attempt: int, base_s: float, cap_s: float) -> float:
    """Doubles per attempt from `base_s`, capped."""
    return float(min(cap_s, base_s * 2 ** max(0, attempt - 1)))
