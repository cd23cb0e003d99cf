"""The relay's first step taken by the door's enqueue (bridge/relay/begun.py): an entry handed
to a resting consumer is delivered without a store step of its own, and what the enqueue found
is used only as far as it provably still holds. `started_use` from a table; the consumer's use
of it through the rig (whose door plans as the webhook's does)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from bridge.eightbyeight.events import ChatEvent
from bridge.errors import StoreUnavailable
from bridge.ids import ConversationId, EventId
from bridge.relay import Relay, begun
from bridge.relay.begun import FRESH_S, Begun, Use, begun_from, fresh, started_use
from bridge.relay.identity import MessageIdentity, text_digest
from bridge.relay.recovery import Offer, offer_message
from bridge.store.base import HandoffRecord, MessageClaim, Started

from .conftest import JOINED, Rig, RigFactory, said
from .test_lane_delivery import signalled
from .test_pipeline import resting, stall_and_watch

RECORD = HandoffRecord({"state": "with_agent"}, 3)
MINE = Started(1, MessageClaim.MINE, 1, RECORD)


@pytest.mark.parametrize(
    ("started", "same_consumer", "unread", "undisturbed", "use"),
    [
        (MINE, True, True, True, Use.WHOLE),
        (MINE, True, True, False, Use.ATTEMPT),  # the sender's lane got work since the read
        (MINE, False, True, True, Use.NOTHING),  # another consumer: it may have worked it
        (MINE, True, False, True, Use.NOTHING),  # read from the stream (and worked) already
        (MINE, False, False, False, Use.NOTHING),
        (None, True, True, True, Use.NOTHING),  # the enqueue took no step
        (Started(0, MessageClaim.LOST, 0, RECORD), True, True, True, Use.NOTHING),  # fenced out
        (Started(2, MessageClaim.OTHER, 0, RECORD), True, True, True, Use.NOTHING),
        (Started(1, MessageClaim.DELIVERED, 0, RECORD), True, True, True, Use.NOTHING),
        (Started(1, MessageClaim.MINE, 0, RECORD), True, True, True, Use.NOTHING),  # uncounted
    ],
)
def test_what_the_enqueue_took_is_used_only_as_far_as_it_holds(
    started: Started | None, same_consumer: bool, unread: bool, undisturbed: bool, use: Use
) -> None:
    got = started_use(started, same_consumer=same_consumer, unread=unread, undisturbed=undisturbed)
    assert got is use


def test_the_record_goes_with_the_start_only_when_whole() -> None:
    assert begun_from(MINE, Use.WHOLE) == Begun(1, 1, record=RECORD, record_read=True)
    assert begun_from(MINE, Use.ATTEMPT) == Begun(1, 1)
    assert begun_from(MINE, Use.NOTHING) is None
    assert begun_from(None, Use.WHOLE) is None
    unread = Started(1, MessageClaim.MINE, 1, None, record_read=False)  # its read failed
    assert begun_from(unread, Use.WHOLE) == Begun(1, 1)


async def joined(make_rig: RigFactory) -> Rig:
    """ada's c1 joined by an agent, all of it delivered; no poll ends a rest within a test (a
    test's plan and hand must fall in one rest, or in the rests it makes)."""
    rig = await make_rig(poll_s=60.0)
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    return rig


def test_the_doors_step_is_used_only_soon_after_it() -> None:
    taken = Begun(1, 1, at=100.0)
    assert fresh(taken, 100.0 + FRESH_S) is taken
    assert fresh(taken, 100.0 + FRESH_S + 0.01) is None  # its fence is too old: claim again
    assert fresh(None, 100.0) is None


def steps(rig: Rig) -> list[str]:
    """The relay's own store steps for a message's start, as they are called."""
    called: list[str] = []
    for name in ("claim_and_begin", "claim_and_begin_run", "load_handoff", "begin_attempt"):
        step = getattr(rig.store, name)

        async def counted(*args: Any, _name: str = name, _step: Any = step) -> Any:
            called.append(_name)
            return await _step(*args)

        setattr(rig.store, name, counted)
    return called


def lookups(rig: Rig) -> int:
    """Tracker lookups: what a delivery does before pushing an attempt after the first."""
    return sum(1 for c in rig.rasa.calls if c.kind == "lookup")


async def rest_again(relay: Relay) -> None:
    """The resting consumer of partition 0 woken, until it rests again (a rest of its own)."""
    before, rested, idle = relay._resting[0], asyncio.Event(), relay._idle

    async def noted(p: int, *args: Any) -> None:
        rested.set()
        await idle(p, *args)

    relay._idle = noted  # type: ignore[method-assign]
    try:
        relay.kick(0)
        await signalled(rested)
    finally:
        del relay._idle  # the class's again
    assert relay._resting[0] is not before


async def enqueued_with_plan(rig: Rig, event_id: str, event: ChatEvent) -> Any:
    """The door's plan and enqueue, without its hand (the test hands)."""
    relay = rig.relays[0]
    begin = relay.plan(0, EventId(event_id), event)
    assert begin is not None
    enqueued = await rig.store.enqueue_event(
        0, EventId(event_id), event.to_json(), 3600, begin=begin
    )
    assert enqueued is not None and enqueued.started is not None
    return enqueued, begin


async def test_an_entry_handed_straight_is_delivered_without_a_store_step_of_its_own(
    make_rig: RigFactory,
) -> None:
    rig = await joined(make_rig)
    called = steps(rig)
    await resting(rig.relays[0])
    await rig.say("c1", "a1")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1"]
    assert called == []  # claimed, counted and the record read with the enqueue
    assert lookups(rig) == 0  # a first attempt
    assert await rig.store.read_events(0, 10) == []


async def test_a_consumer_that_moved_between_plan_and_hand_reads_the_record_again(
    make_rig: RigFactory,
) -> None:
    """The consumer woke (and rested again) after the plan: what it did meanwhile may have
    written the record, so only the claim and the attempt are used."""
    rig = await joined(make_rig)
    relay = rig.relays[0]
    called = steps(rig)
    await resting(relay)
    a1 = said("c1", "a1")
    begin = relay.plan(0, EventId("e1"), a1)
    assert begin is not None
    await rest_again(relay)
    enqueued = await rig.store.enqueue_event(0, EventId("e1"), a1.to_json(), 3600, begin=begin)
    assert enqueued is not None
    relay.hand(0, enqueued, a1, begin)
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1"]
    assert called == ["load_handoff"]
    assert lookups(rig) == 0


async def test_one_plan_at_a_time_and_a_step_only_in_stream_order(
    make_rig: RigFactory,
) -> None:
    """While a1's plan is out (enqueued, not handed), a2 is not planned: it would come behind
    a1 before the consumer has taken it, and its step be refused (identities are claimed in
    stream order), as the store refuses it when asked: a2's delivery claims it, behind a1's in
    ada's lane. Once a1 is handed, the rest plans again."""
    rig = await joined(make_rig)
    relay = rig.relays[0]
    called = steps(rig)
    await resting(relay)
    a1, a2 = said("c1", "a1"), said("c1", "a2")
    first, begin1 = await enqueued_with_plan(rig, "e1", a1)
    assert relay.plan(0, EventId("e2"), a2) is None  # a1's plan is out
    asked = replace(begin1, frontier=relay._resting[0].intake.settled)  # as if planned anyway
    second = await rig.store.enqueue_event(0, EventId("e2"), a2.to_json(), 3600, begin=asked)
    assert second is not None and second.started is None  # behind unread a1: no step
    relay.hand(0, first, a1, begin1)
    relay.hand(0, second, a2, None)
    assert relay._resting[0].planned == 0  # a1 handed: the rest may plan again
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1", "a2"]
    assert called == ["claim_and_begin"]  # a2's
    assert lookups(rig) == 0


async def test_a_plan_given_back_lets_the_rest_plan_again(make_rig: RigFactory) -> None:
    """The door gives back a plan it will not hand (a duplicate, a refusal, a failure)."""
    rig = await joined(make_rig)
    relay = rig.relays[0]
    await resting(relay)
    a1 = said("c1", "a1")
    begin = relay.plan(0, EventId("e1"), a1)
    assert begin is not None
    assert relay.plan(0, EventId("e2"), a1) is None  # one at a time
    relay.unplan(begin)
    assert relay._resting[0].planned == 0
    assert relay.plan(0, EventId("e2"), a1) is not None


async def test_an_entry_read_before_its_hand_is_claimed_again_and_looked_for(
    make_rig: RigFactory,
) -> None:
    """The consumer read the entry from the stream before the door handed it (a doorbell, the
    poll, a Cluster's second connection): its delivery claims it again and, the attempt being
    its second, looks in the tracker first. The late hand adds nothing."""
    rig = await joined(make_rig)
    relay = rig.relays[0]
    called = steps(rig)
    await resting(relay)
    a1 = said("c1", "a1")
    enqueued, begin = await enqueued_with_plan(rig, "e1", a1)
    rig.kick(0)
    await rig.idle()
    relay.hand(0, enqueued, a1, begin)
    assert relay._intakes[0].begun(enqueued.entry.entry_id) is None  # nothing kept for it
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1"]
    assert called == ["claim_and_begin"]
    assert lookups(rig) == 1


async def test_an_entry_worked_again_after_a_lane_failed_is_looked_for_not_pushed_twice(
    make_rig: RigFactory,
) -> None:
    """a1 is pushed, then its ack fails: the consumer reads it again from the stream's start.
    What the enqueue took was its first working's: the second claims again, finds it in the
    tracker and does not push it again."""
    rig = await joined(make_rig)
    relay = rig.relays[0]
    failed, acked = asyncio.Event(), asyncio.Event()
    ack_message = rig.store.ack_message

    async def failing_once(
        partition: int, entry_id: str, owner: str, *args: Any, **kwargs: Any
    ) -> bool:
        if not failed.is_set():
            failed.set()
            raise StoreUnavailable("redis unavailable: ConnectionError")
        acked.set()
        return await ack_message(partition, entry_id, owner, *args, **kwargs)

    rig.store.ack_message = failing_once  # type: ignore[method-assign]
    called = steps(rig)
    await resting(relay)
    await rig.say("c1", "a1")
    await signalled(failed)
    rig.kick(0)
    await signalled(acked)
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1"]
    assert called == ["claim_and_begin"]  # the second working's own
    assert lookups(rig) == 1


async def test_an_unread_entry_before_it_keeps_its_identity_first(
    make_rig: RigFactory,
) -> None:
    """The agent said "ok" twice; the first one's webhook was lost and recovery enqueued it
    (`msg:<digest>:1`, no kick: the consumer would read it at its poll). The second one's
    webhook comes first: its enqueue must not take the step (it would claim the ordinal 1,
    the recovered entry's, which would then be skipped as another's). Both are shown, in
    order (found by review)."""
    rig = await joined(make_rig)
    called = steps(rig)
    await resting(rig.relays[0])
    identity = MessageIdentity(text_digest("ok"), 1)
    offered = await offer_message(rig.store, ConversationId("c1"), identity, said("c1", "ok"), 3600)
    assert offered is Offer.ENQUEUED
    await rig.say("c1", "ok")  # planned, enqueued after the unread one: no step
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "ok", "ok"]
    assert called == ["claim_and_begin_run"]  # both claimed by the consumer, in order


async def test_an_entry_that_starts_long_after_the_doors_step_claims_again(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `FRESH_S` (here: at once), the step's fence is too old to push on: the delivery
    claims again (a second attempt, so it looks in the tracker first) and shows it once."""
    monkeypatch.setattr(begun, "FRESH_S", -1.0)
    rig = await joined(make_rig)
    called = steps(rig)
    await resting(rig.relays[0])
    await rig.say("c1", "a1")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1"]
    assert called == ["claim_and_begin"]
    assert lookups(rig) == 1


async def test_no_plan_while_a_lane_runs(make_rig: RigFactory) -> None:
    """Then the relay's own steps share their writes with the lanes' (and a plan cost more than
    it saved at saturation): bob's text is not planned while ada's push is in Rasa's hands."""
    rig = await joined(make_rig)
    await rig.link("bob", "c2")
    await rig.join("c2")
    await rig.idle()
    relay = rig.relays[0]
    stalled, release, _ = stall_and_watch(rig, "a1", "b1")
    await resting(relay)
    await rig.say("c1", "a1")
    await signalled(stalled)
    await resting(relay)
    assert relay.plan(0, EventId("b1"), said("c2", "b1")) is None
    release.set()
    await rig.idle()
    await resting(relay)
    assert relay.plan(0, EventId("b2"), said("c2", "b2")) is not None  # every lane ended
