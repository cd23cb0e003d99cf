"""Runs through the consumer (bridge/relay/runs.py, `Deliverer.process_run`): several agent
messages of one conversation in one store step, one push and one ack, and every way a run can
stop short, each message still shown once, in order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from bridge.eightbyeight.events import EventKind
from bridge.errors import RetryableUpstreamError, StoreUnavailable
from bridge.ids import ConversationId, EventId
from bridge.rasa.client import error_for_status
from bridge.relay import Relay
from bridge.relay.identity import text_digest
from bridge.store.base import Claim, MessageState

from .conftest import (
    JOINED,
    LANDED,
    Call,
    Rig,
    RigFactory,
    event,
    kept_ordinals,
    retake_lease_at,
    said,
    stale_sleeps,
)

C = ConversationId("c1")
LEFT = "#EXTERNAL_agent_left"
STEPS = ("claim_and_begin_run", "ack_messages", "claim_and_begin", "ack_message", "begin_attempt")


def count_steps(rig: Rig) -> Counter[str]:
    """How often the relay calls each of the store's per-message steps from now on."""
    counts: Counter[str] = Counter()
    for name in STEPS:
        method = getattr(rig.store, name)

        async def counted(*args: Any, _name: str = name, _m: Any = method, **kw: Any) -> Any:
            counts[_name] += 1
            return await _m(*args, **kw)

        setattr(rig.store, name, counted)
    return counts


async def with_agent(make_rig: RigFactory, **config: Any) -> Rig:
    """ada's conversation c1 with an agent, and no relay consuming: what is enqueued next waits
    in the stream, read in one batch by the relay `resume` starts."""
    rig = await make_rig(**config)
    await rig.link("ada", "c1")
    await rig.started("relay-a")
    await rig.join("c1")
    await rig.idle()
    await rig.relays[0].stop()
    return rig


async def resume(rig: Rig) -> Relay:
    relay = await rig.started("relay-b")
    await rig.idle(relay)
    return relay


def lookups(rig: Rig) -> list[str | None]:
    return [c.marker for c in rig.rasa.calls if c.kind == "lookup"]


async def delivered(rig: Rig, *texts: str) -> list[MessageState]:
    return [await rig.store.message_state(0, C, text_digest(t), 1) for t in texts]


async def test_a_run_goes_in_one_store_step_one_push_and_one_ack(make_rig: RigFactory) -> None:
    rig = await with_agent(make_rig)
    await rig.link("bob", "c2")
    await rig.say("c1", "one", "two")
    await rig.say("c2", "elsewhere")  # another conversation's entry between them
    await rig.say("c1", "three")
    steps = count_steps(rig)
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", "three"]
    assert rig.rasa.timeline("bob") == [JOINED, "elsewhere"]  # alone: implies the join
    assert rig.rasa.sizes == [1, 3, 1, 1]  # the join's intent, the run, then c2's two
    assert steps == Counter({"claim_and_begin_run": 1, "ack_messages": 1, "claim_and_begin": 1,
                             "ack_message": 1})  # fmt: skip
    assert lookups(rig) == []
    assert await rig.store.read_events(0, 10) == []
    assert await delivered(rig, "one", "two", "three") == [MessageState.DELIVERED] * 3
    assert rig.metrics.relay_outcomes.labels("relayed")._value.get() == 3
    assert rig.metrics.relay_deliveries.labels("message")._value.get() == 4  # bob's too


async def test_a_runs_ack_settles_the_webhooks_claims_and_lets_their_markers_go(
    make_rig: RigFactory,
) -> None:
    rig = await with_agent(make_rig)
    await rig.enqueue(said("c1", "hello"), "e-1", claimed=True)
    await rig.enqueue(said("c1", "again"), "e-2", claimed=True)
    await rig.enqueue(said("c1", "listed"), "e-plain")  # not the webhook's (recovery's): kept
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED, "hello", "again", "listed"]
    assert rig.rasa.sizes == [1, 3]
    for eid in ("e-1", "e-2"):
        claim = await rig.store.claim_event(EventId(eid), "body", settled=False)
        assert claim.state is Claim.DONE
        assert 0 < await rig.store.redis.pttl(rig.store.keys.enqueued(0, EventId(eid))) <= 15_000
    assert await rig.store.redis.ttl(rig.store.keys.enqueued(0, EventId("e-plain"))) > 60
    assert await kept_ordinals(rig, 0, "c1") == []  # every message's, the webhook's or not


async def test_a_state_change_cuts_the_run_and_what_follows_goes_behind_it(
    make_rig: RigFactory,
) -> None:
    rig = await with_agent(make_rig)
    await rig.say("c1", "one", "two")
    await rig.enqueue(event(EventKind.AGENT_LEFT, "c1", agent_name="Anna"))
    await rig.say("c1", "too late")  # after the leave: not for the user any more
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", LEFT]
    assert rig.rasa.sizes == [1, 2, 1]
    assert await rig.store.read_events(0, 10) == []


async def test_the_state_machine_cuts_a_run_that_implies_the_join(make_rig: RigFactory) -> None:
    """Messages before the agent's join: the first one's join notice is an intent, so the run
    goes one at a time from there, each from the claim the run took (no look in the tracker:
    the run pushed none of them)."""
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.say("c1", "one", "two", "three")
    steps = count_steps(rig)
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", "three"]
    assert rig.rasa.sizes == [1, 1, 1, 1]
    assert lookups(rig) == []
    assert steps["claim_and_begin_run"] == 1 and steps["claim_and_begin"] == 0
    assert steps["ack_message"] == 3
    assert await delivered(rig, "one", "two", "three") == [MessageState.DELIVERED] * 3


@pytest.mark.parametrize(
    "failure",
    [LANDED, error_for_status(503, ""), RetryableUpstreamError("Rasa unreachable: TimeoutError")],
    ids=["landed", "503", "unreachable"],
)
async def test_a_failed_run_push_falls_back_one_at_a_time_each_shown_once(
    make_rig: RigFactory, failure: BaseException | str
) -> None:
    """The run's push fails (landed with its answer lost, or not): each message then goes on
    its own, looked for in the tracker first, and is shown exactly once."""
    rig = await with_agent(make_rig)
    rig.rasa.failures = [failure]
    await rig.say("c1", "one", "two", "three")
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", "three"]
    markers = [c.marker for c in rig.rasa.pushes("ada") if c.kind == "bot"]
    assert len(lookups(rig)) == 3 and lookups(rig) == markers[:3]  # each looked for once
    assert rig.rasa.sizes == ([1, 3] if failure == LANDED else [1, 3, 1, 1, 1])
    assert rig.clock.slept == [0.25]  # the run's first backoff, once
    assert rig.metrics.relay_retries._value.get() == 3  # per message, as one at a time
    assert await delivered(rig, "one", "two", "three") == [MessageState.DELIVERED] * 3
    assert await rig.store.read_events(0, 10) == []


async def test_a_run_whose_lease_was_taken_again_mid_push_does_not_wait_out_a_backoff(
    make_rig: RigFactory,
) -> None:
    """The run's push fails after its consumer's lease was taken again: the new consumer
    starts only once the stale one has ended, so a backoff the stale one waited out (up to the
    30 s cap) would stall the whole partition."""
    rig = await with_agent(make_rig, backoff_base_s=30.0, max_attempts=50)
    rig.clock.frozen = True  # a backoff waited out must not make the lease look lapsed
    await rig.say("c1", "stuck", "two")
    relay = await rig.started("relay-b")
    slept = stale_sleeps(relay)
    retaken = retake_lease_at(rig, relay, "stuck")
    relay.kick(0)
    await rig.idle(relay)
    assert retaken() and rig.rasa.sizes[1] == 2  # it failed as a run
    assert rig.rasa.timeline("ada") == [JOINED, "stuck", "two"]  # the new consumer's
    assert slept == []


async def test_a_failed_run_push_spends_each_messages_budget(make_rig: RigFactory) -> None:
    """With one attempt allowed, the run's failed push was each message's only attempt: dead
    letters (their replay finds a landed push in the tracker)."""
    rig = await with_agent(make_rig, max_attempts=1)
    rig.rasa.failures = [error_for_status(503, "")]
    await rig.say("c1", "one", "two")
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED]
    assert [d.reason for d in await rig.store.list_dead_letters()] == ["max_attempts"] * 2


async def test_a_message_rasa_refuses_is_found_one_at_a_time(make_rig: RigFactory) -> None:
    rig = await with_agent(make_rig)
    rig.rasa.refusals = {"bad": error_for_status(400, "")}
    await rig.say("c1", "one", "bad", "three")
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "three"]
    [dead] = await rig.store.list_dead_letters()
    assert dead.reason == "rejected_by_rasa" and "bad" in dead.entry.payload
    assert rig.clock.slept == []


async def test_a_lease_lost_mid_run_leaves_it_to_the_next_holder_shown_once(
    make_rig: RigFactory,
) -> None:
    rig = await with_agent(make_rig)
    lease = rig.store.keys.partition_lease(0)

    async def taken_meanwhile(call: Call) -> None:
        rig.rasa.on_push = None
        await rig.store.redis.set(lease, "relay-z")  # it lapsed and another relay took it

    rig.rasa.on_push = taken_meanwhile
    await rig.say("c1", "one", "two", "three")
    relay = await rig.started("relay-b")
    await relay.wait_consumers_ended(timeout_s=10.0)
    assert len(await rig.store.read_events(0, 10)) == 3  # the ack was refused: all still there
    assert await delivered(rig, "one", "two", "three") == [MessageState.OWNED] * 3
    assert await rig.store.redis.delete(lease)  # relay-z gave it up (or died)
    steps = count_steps(rig)
    takeover = await rig.started("relay-c")
    await rig.idle(takeover)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", "three"]  # each pushed once
    assert rig.rasa.sizes == [1, 3]
    assert len(lookups(rig)) == 3  # the take-over looked for each before pushing again
    assert steps["claim_and_begin_run"] == 1 and steps["ack_message"] == 3
    assert rig.metrics.relay_skipped._value.get() == 3
    assert await delivered(rig, "one", "two", "three") == [MessageState.DELIVERED] * 3


async def test_redis_failing_at_the_runs_ack_shows_nothing_twice(make_rig: RigFactory) -> None:
    """Rasa took the run, then the ack could not be written: the consumer reads the entries
    again, on a later attempt, and finds every message in the tracker."""
    rig = await with_agent(make_rig)
    await rig.say("c1", "one", "two")
    ack_messages = rig.store.ack_messages

    async def failing_once(
        partition: int, owner: str, conversation: ConversationId, messages: Sequence[Any]
    ) -> bool:
        rig.store.ack_messages = ack_messages  # type: ignore[method-assign]
        raise StoreUnavailable("redis unavailable: ConnectionError")

    rig.store.ack_messages = failing_once  # type: ignore[method-assign]
    await resume(rig)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two"]
    assert rig.rasa.sizes == [1, 2]
    assert len(lookups(rig)) == 2
    assert await delivered(rig, "one", "two") == [MessageState.DELIVERED] * 2
