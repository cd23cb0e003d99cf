"""The relay's decisions (bridge/relay/decisions.py) as tables: each row one rule."""

from __future__ import annotations

import pytest

from bridge.rasa.client import is_retryable_status
from bridge.relay.decisions import (
    FRESH,
    LOST,
    RENEWED,
    AfterFailure,
    ConsumerAction,
    Failure,
    HeldFate,
    LeasePlan,
    Route,
    after_failure,
    backoff,
    fair_share,
    held_fate,
    hold_deadline,
    may_push,
    on_grant,
    plan_leases,
    push_deadline,
    route_entry,
)


@pytest.mark.parametrize(
    ("partitions", "live", "share"),
    [(16, 1, 16), (16, 2, 8), (16, 3, 6), (16, 16, 1), (16, 40, 1), (16, 0, 16), (1, 2, 1)],
)
def test_fair_share_is_the_ceiling_of_partitions_per_live_relay(
    partitions: int, live: int, share: int
) -> None:
    assert fair_share(partitions, live) == share


@pytest.mark.parametrize(
    ("owned", "live", "stopping", "plan"),
    [
        ([], 1, False, LeasePlan((), (), 16)),  # alone: take everything
        ([3, 1, 2], 1, False, LeasePlan((1, 2, 3), (), 16)),  # renew all, sorted
        (list(range(16)), 2, False, LeasePlan(tuple(range(8)), tuple(range(8, 16)), 8)),
        ([5, 9], 4, False, LeasePlan((5, 9), (), 4)),  # under the share: keep, take up to it
        (list(range(16)), 2, True, LeasePlan(tuple(range(16)), (), 0)),  # stopping: renew only
        ([], 1, True, LeasePlan((), (), 0)),
    ],
)
def test_a_lease_round_renews_up_to_the_share_gives_back_the_rest(
    owned: list[int], live: int, stopping: bool, plan: LeasePlan
) -> None:
    assert plan_leases(owned, 16, live, stopping=stopping) == plan


@pytest.mark.parametrize(
    ("grant", "running", "action"),
    [
        (FRESH, False, ConsumerAction.START),
        (RENEWED, False, ConsumerAction.START),  # a consumer that died: start another
        (RENEWED, True, ConsumerAction.KEEP),
        (FRESH, True, ConsumerAction.RESTART),  # lapsed and re-taken: the consumer is stale
        (LOST, True, ConsumerAction.STOP),
        (LOST, False, ConsumerAction.NONE),
    ],
)
def test_a_grant_decides_the_consumer(grant: int, running: bool, action: ConsumerAction) -> None:
    assert on_grant(grant, running) is action


@pytest.mark.parametrize(
    ("grant", "running", "action"),
    [
        (FRESH, False, ConsumerAction.NONE),  # a stopping relay takes no partition
        (RENEWED, False, ConsumerAction.NONE),  # nor restarts a consumer that finished
        (RENEWED, True, ConsumerAction.KEEP),  # the delivery in flight finishes under its lease
        (FRESH, True, ConsumerAction.STOP),  # lapsed: stale, and we are leaving anyway
        (LOST, True, ConsumerAction.STOP),
        (LOST, False, ConsumerAction.NONE),
    ],
)
def test_a_stopping_relay_starts_no_consumer(
    grant: int, running: bool, action: ConsumerAction
) -> None:
    assert on_grant(grant, running, stopping=True) is action


@pytest.mark.parametrize(
    ("asked_at", "now", "allowed"),
    [
        (100.0, 100.0, True),
        (100.0, 107.99, True),
        (100.0, 108.0, False),  # 80 % of a 10 s lease after the renewal was asked for
        (100.0, 111.0, False),
    ],
)
def test_pushes_stop_before_the_lease_can_lapse(asked_at: float, now: float, allowed: bool) -> None:
    assert may_push(now, push_deadline(asked_at, 10_000)) is allowed


def test_no_lease_no_push() -> None:
    assert not may_push(0.0, None)


@pytest.mark.parametrize(
    ("held", "known", "route"),
    [
        (True, True, Route.HOLD_BEHIND),  # mapped meanwhile: still behind the held ones
        (True, False, Route.HOLD_BEHIND),
        (False, False, Route.HOLD),
        (False, True, Route.DELIVER),
    ],
)
def test_an_entry_is_held_behind_held_ones_of_its_conversation(
    held: bool, known: bool, route: Route
) -> None:
    assert route_entry(held, known) is route


@pytest.mark.parametrize(
    ("known", "now", "fate"),
    [
        (True, 0, HeldFate.RELEASE),
        (True, 10_000, HeldFate.RELEASE),  # known, even past the deadline: deliver
        (False, 4_999, HeldFate.WAIT),
        (False, 5_000, HeldFate.GIVE_UP),
    ],
)
def test_a_held_conversation_waits_is_released_or_given_up(
    known: bool, now: int, fate: HeldFate
) -> None:
    assert held_fate(known, now, 5_000) is fate


def test_the_hold_deadline_counts_from_acceptance() -> None:
    assert hold_deadline(1_000, 2.5) == 3_500


BUDGET = {"max_attempts": 3, "max_age_s": 60.0, "backoff_s": 0.5}


@pytest.mark.parametrize(
    ("failure", "attempt", "age", "after"),
    [
        (Failure.PERMANENT, 1, 0.0, AfterFailure("rejected_by_rasa")),
        (Failure.RETRYABLE, 1, 0.0, AfterFailure(None, 0.5)),
        (Failure.RETRYABLE, 2, 59.9, AfterFailure(None, 0.5)),
        (Failure.RETRYABLE, 3, 0.0, AfterFailure("max_attempts")),
        (Failure.RETRYABLE, 1, 60.0, AfterFailure("max_age")),
        (Failure.INTERNAL, 1, 60.0, AfterFailure(None, 0.5)),  # a bug: bounded by attempts only
        (Failure.INTERNAL, 3, 0.0, AfterFailure("internal_error")),
    ],
)
def test_after_a_failure_retry_or_dead_letter(
    failure: Failure, attempt: int, age: float, after: AfterFailure
) -> None:
    assert after_failure(failure, attempt, age, **BUDGET) == after  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempt", "delay"), [(0, 0.25), (1, 0.25), (2, 0.5), (3, 1.0), (8, 30.0), (40, 30.0)]
)
def test_backoff_doubles_then_caps(attempt: int, delay: float) -> None:
    assert backoff(attempt, 0.25, 30.0) == delay


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (400, False),
        (401, True),  # a rotated token: an operator can fix it
        (403, True),
        (404, True),  # intent not in the domain (a deploy in progress): not permanent
        (408, True),
        (409, True),  # Rasa's conversation lock
        (413, False),
        (422, False),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
    ],
)
def test_which_rasa_answers_are_worth_retrying(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
