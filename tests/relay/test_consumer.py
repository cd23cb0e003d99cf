"""The consumer loop and the Deliverer, every branch, on the embedded store in milliseconds:
retries, dead letters, holds, lease give-back, take-over and loss, Rasa's error answers."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bridge.eightbyeight.events import EventKind
from bridge.errors import RetryableUpstreamError
from bridge.ids import ConversationId, EventId, SenderId
from bridge.rasa.client import error_for_status
from bridge.relay import Relay, entries
from bridge.relay.identity import text_digest
from bridge.store.base import Claim, MessageState, StreamEntry, partition_of

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


def dead_count(rig: Rig, reason: str) -> float:
    value: float = rig.metrics.dead_letters.labels(reason)._value.get()
    return value


async def stream(rig: Rig, partition: int = 0) -> list[StreamEntry]:
    return await rig.store.read_events(partition, 100)


# --- delivery and order ---


async def test_events_are_delivered_in_order_and_acknowledged(make_rig: RigFactory) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.say("c1", "one", "two", "three")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", "three"]
    assert await stream(rig) == []
    assert not [c for c in rig.rasa.calls if c.kind == "lookup"]  # first attempts: no lookups


async def test_handed_events_are_not_parsed_again(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The door hands each event it parsed with its entry: a consumer that takes the entry
    works that event, and parses the stream's copy only for what it reads back."""
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    await rig.idle()
    parsed: list[str] = []
    real = entries.decode

    def decode(entry: StreamEntry) -> object:
        parsed.append(entry.entry_id)
        return real(entry)

    monkeypatch.setattr(entries, "decode", decode)
    await rig.join("c1")
    await rig.say("c1", "one", "two")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two"]
    assert parsed == []


async def test_delivery_settles_the_webhooks_claim_and_lets_its_marker_go(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    await rig.enqueue(
        event(EventKind.AGENT_JOINED, "c1", agent_name="Anna"), "e-join", claimed=True
    )
    await rig.enqueue(said("c1", "hello"), "e-text", claimed=True)
    await rig.enqueue(said("c1", "bye"), "e-plain")  # not the webhook's (recovery's): kept
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "hello", "bye"]
    p = partition_of("c1", rig.store.partitions)
    for eid in ("e-join", "e-text"):
        claim = await rig.store.claim_event(EventId(eid), "body", settled=False)
        assert claim.state is Claim.DONE
        assert 0 < await rig.store.redis.pttl(rig.store.keys.enqueued(p, EventId(eid))) <= 15_000
    assert await rig.store.redis.ttl(rig.store.keys.enqueued(p, EventId("e-plain"))) > 60
    await rig.enqueue(said("c1", "alone"), "e-alone")  # one at a time, not the webhook's
    await rig.idle()
    # every message's ordinal is forgotten with its entry, the webhook's or not
    assert await kept_ordinals(rig, p, "c1") == []


async def test_the_same_text_twice_is_two_messages_each_recorded(make_rig: RigFactory) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    await rig.say("c1", "ok", "ok")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "ok", "ok"]  # the first implies the join
    h, c = text_digest("ok"), ConversationId("c1")
    for ordinal in (1, 2):
        assert await rig.store.message_state(0, c, h, ordinal) is MessageState.DELIVERED


# --- Rasa's answers ---


@pytest.mark.parametrize("status", [404, 409, 429, 500, 503, 401])
async def test_a_retryable_rasa_answer_is_retried_with_backoff_then_delivered_once(
    make_rig: RigFactory, status: int
) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    rig.rasa.failures = [error_for_status(status, ""), error_for_status(status, "")]
    await rig.say("c1", "hello")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]
    assert rig.clock.slept == [0.25, 0.5]
    assert rig.metrics.relay_retries._value.get() == 2
    assert dead_count(rig, "rejected_by_rasa") == 0


async def test_a_timeout_whose_push_landed_is_found_in_the_tracker_not_pushed_again(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    rig.rasa.failures = [LANDED]
    await rig.say("c1", "hello")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]
    assert len([c for c in rig.rasa.pushes("ada") if c.text == "hello"]) == 1
    assert rig.metrics.relay_skipped._value.get() == 1


async def test_rasa_unreachable_is_retried(make_rig: RigFactory) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    rig.rasa.failures = [RetryableUpstreamError("Rasa unreachable: TimeoutError")]
    await rig.join("c1")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED]


@pytest.mark.parametrize("status", [400, 422])
async def test_a_permanent_rasa_answer_dead_letters_at_once_and_the_next_proceeds(
    make_rig: RigFactory, status: int
) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    rig.rasa.refusals = {"refused": error_for_status(status, "")}
    await rig.say("c1", "refused", "next")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "next"]
    [dead] = await rig.store.list_dead_letters()
    assert dead.reason == "rejected_by_rasa" and "refused" in dead.entry.payload
    assert dead_count(rig, "rejected_by_rasa") == 1
    assert rig.clock.slept == []


async def test_the_dead_letter_is_written_before_it_is_counted(make_rig: RigFactory) -> None:
    rig = await make_rig(max_attempts=2)
    await rig.link("ada", "c1")
    relay = await rig.started()
    counted_at_write: list[float] = []
    write = rig.store.dead_letter

    async def observed(*args, **kwargs):  # type: ignore[no-untyped-def]
        counted_at_write.append(dead_count(rig, "max_attempts"))
        return await write(*args, **kwargs)

    rig.store.dead_letter = observed  # type: ignore[method-assign]
    rig.rasa.failures = [error_for_status(503, "")] * 2
    await rig.join("c1")
    await rig.idle(relay)
    assert counted_at_write == [0]  # not counted while not yet listable
    assert dead_count(rig, "max_attempts") == 1
    assert [d.reason for d in await rig.store.list_dead_letters()] == ["max_attempts"]


async def test_after_max_attempts_the_event_is_dead_lettered_and_the_next_proceeds(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(max_attempts=3)
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    rig.rasa.failures = [error_for_status(503, "")] * 3
    await rig.say("c1", "lost cause", "next one")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "next one"]
    assert rig.clock.slept == [0.25, 0.5]  # two waits between three attempts
    assert dead_count(rig, "max_attempts") == 1


async def test_an_event_older_than_its_budget_is_dead_lettered(make_rig: RigFactory) -> None:
    rig = await make_rig(max_age_s=0.6)
    await rig.link("ada", "c1")
    await rig.started()
    rig.rasa.failures = [error_for_status(503, "")] * 3
    await rig.join("c1")
    await rig.idle()
    assert rig.clock.slept == [0.25, 0.5]  # third failure: 0.75 s old, over 0.6
    assert dead_count(rig, "max_age") == 1
    assert rig.rasa.timeline("ada") == []


async def test_a_bug_while_delivering_is_retried_then_dead_lettered(make_rig: RigFactory) -> None:
    rig = await make_rig(max_attempts=2)
    await rig.link("ada", "c1")
    await rig.started()
    rig.rasa.failures = [ValueError("bug"), ValueError("bug")]
    await rig.join("c1")
    await rig.say("c1", "after")
    await rig.idle()
    assert dead_count(rig, "internal_error") == 1
    assert rig.rasa.timeline("ada") == [JOINED, "after"]  # the message implies the join


# --- holding events of conversations not mapped yet ---


async def test_events_before_the_mapping_are_held_then_delivered_in_order(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    await rig.started()
    await rig.join("c1")
    await rig.say("c1", "are you there?")
    await rig.idle()
    assert rig.rasa.calls == []
    assert set(await rig.store.held_conversations(0)) == {"c1"}
    await rig.link("dee", "c1")
    rig.kick()
    await rig.idle()
    assert rig.rasa.timeline("dee") == [JOINED, "are you there?"]
    assert await rig.store.held_conversations(0) == {}
    h = text_digest("are you there?")
    assert await rig.store.message_state(0, ConversationId("c1"), h, 1) is MessageState.DELIVERED


async def test_events_arriving_behind_held_ones_stay_behind_once_mapped(
    make_rig: RigFactory,
) -> None:
    """The mapping appears while the consumer is between a held entry and a later one of the
    same conversation: the later one must still wait behind the held one."""
    rig = await make_rig()
    await rig.link("bob", "other")

    async def link_when_other_is_pushed(call: Call) -> None:
        if call.sender == "bob" and call.text == "x":
            await rig.link("dee", "c1")

    rig.rasa.on_push = link_when_other_is_pushed
    await rig.say("c1", "first")
    await rig.say("other", "x")
    await rig.say("c1", "second")
    await rig.started()
    await rig.idle()
    assert rig.rasa.timeline("dee") == [JOINED, "first", "second"]


async def test_held_events_of_a_never_mapped_conversation_go_to_the_dead_letters(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(hold_s=5.0)
    await rig.started()
    await rig.say("c1", "anyone?", "hello?")
    await rig.idle()
    assert dead_count(rig, "unknown_conversation") == 0
    rig.clock.advance(6.0)
    await rig.relays[0].renew_leases()  # time passed: renew as the supervisor would
    rig.kick()
    await rig.idle()
    dead = await rig.store.list_dead_letters()
    assert [d.reason for d in dead] == ["unknown_conversation"] * 2
    assert dead_count(rig, "unknown_conversation") == 2
    assert rig.metrics.unknown_conversation._value.get() == 2
    assert await rig.store.held_conversations(0) == {}


# --- leases ---


async def test_a_second_relay_gets_its_share_and_the_first_gives_it_back(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(partitions=4)
    a = await rig.started("relay-a")
    assert a.owned_partitions == [0, 1, 2, 3]
    b = await rig.started("relay-b")
    assert b.owned_partitions == []  # nothing free yet
    await a.renew_leases()
    assert a.owned_partitions == [0, 1]  # gave back what exceeds ceil(4 / 2)
    await b.renew_leases()
    assert b.owned_partitions == [2, 3]
    await b.stop()
    await a.renew_leases()
    assert a.owned_partitions == [0, 1, 2, 3]


async def test_a_lease_lost_mid_push_leaves_the_entry_to_the_next_holder_once(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig()
    await rig.link("ada", "c1")
    relay = await rig.started()
    await rig.join("c1")
    await rig.idle()
    lease = rig.store.keys.partition_lease(0)

    async def taken_meanwhile(call: Call) -> None:
        if call.text == "hello":
            rig.rasa.on_push = None
            await rig.store.redis.set(lease, "relay-z")  # it lapsed and another relay took it

    rig.rasa.on_push = taken_meanwhile
    await rig.say("c1", "hello")
    await _consumer_gone(relay)
    assert [e.event_id for e in await stream(rig)] != []  # the ack was refused: still there
    assert await rig.store.redis.delete(lease)  # relay-z gave it up
    await relay.renew_leases()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]  # pushed once: found in the tracker
    assert rig.metrics.relay_skipped._value.get() == 1


async def test_no_push_once_the_lease_may_have_lapsed(make_rig: RigFactory) -> None:
    rig = await make_rig(backoff_base_s=1.0, max_attempts=10)
    await rig.link("ada", "c1")
    relay = await rig.started()
    rig.rasa.failures = [error_for_status(503, "")] * 10
    await rig.join("c1")
    await _consumer_gone(relay)
    # attempts at 0, 1, 3 and 7 s; the next would be at 15 s, past 80 % of the 10 s lease
    assert len(rig.rasa.pushes("ada")) == 4
    assert len(await stream(rig)) == 1
    rig.rasa.failures = []
    await relay.renew_leases()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED]


async def test_a_lapsed_lease_taken_again_restarts_the_consumer_with_fresh_memory(
    make_rig: RigFactory,
) -> None:
    """A's lease lapses; B holds a conversation's first event meanwhile and stops; A takes the
    lease again. A's old consumer never saw that hold: only a new one (which loads the held set)
    keeps the conversation's next event behind it."""
    rig = await make_rig(hold_s=60.0)
    rig.clock.frozen = True  # A's consumer waits for a renewal without the clock moving
    a = await rig.started("relay-a")
    await rig.idle(a)
    rig.clock.advance(9.0)  # A may no longer push; its lease lapses in Redis too:
    assert await rig.store.redis.delete(rig.store.keys.partition_lease(0))
    b = await rig.started("relay-b")
    await rig.say("c1", "first")
    await rig.idle(b)
    assert set(await rig.store.held_conversations(0)) == {"c1"}
    await b.stop()
    await a.renew_leases()
    await rig.link("dee", "c1")
    await rig.say("c1", "second")
    await rig.idle(a)
    assert rig.rasa.timeline("dee") == [JOINED, "first", "second"]


async def _consumer_gone(relay: Relay) -> None:
    """Until the relay's consumers have stopped on their own (lease lost or lapsing)."""
    await relay.wait_consumers_ended(timeout_s=10.0)


def counted_reads(rig: Rig) -> list[int]:
    """The sizes of the consumer's reads of the stream from now on (the idle check's reads of
    one entry are not counted)."""
    sizes: list[int] = []
    read_events = rig.store.read_events

    async def counted(partition: int, count: int, after: str | None = None) -> list[StreamEntry]:
        entries = await read_events(partition, count, after)
        if count == rig.config.batch:
            sizes.append(len(entries))
        return entries

    rig.store.read_events = counted  # type: ignore[method-assign]
    return sizes


async def test_what_the_door_hands_the_consumer_is_not_read_back(make_rig: RigFactory) -> None:
    # A poll far longer than the test: a read can only follow a kick.
    rig = await make_rig(poll_s=60.0)
    await rig.link("ada", "c1")
    reads = counted_reads(rig)
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    for text in ("one", "two", "three", "four"):
        await rig.say("c1", text)  # handed, as the door hands what it appends
        await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", "three", "four"]
    # The first round's read only (it may have found the join already).
    assert len(reads) == 1, reads


async def test_a_consumer_that_found_the_streams_end_waits_for_a_kick_not_another_read(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(poll_s=60.0)
    await rig.link("ada", "c1")
    reads = counted_reads(rig)
    await rig.started()
    p = partition_of("c1", rig.store.partitions)
    joined = event(EventKind.AGENT_JOINED, "c1", agent_name="Anna")
    for i, entry in enumerate([joined, *(said("c1", t) for t in ("one", "two", "three"))]):
        # Not handed (as another process's enqueue): read, after a kick (its doorbell's).
        assert await rig.store.enqueue_event(p, EventId(f"far-{i}"), entry.to_json(), 3600)
        rig.kick(p)
        await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two", "three"]
    # One read per event, none after it finding nothing: at most one empty read, the first
    # round's (or the one after the join, if the consumer read it before its kick came).
    assert sum(reads) == 4 and reads.count(0) <= 1, reads


async def test_a_handed_entry_after_another_process_entry_waits_for_it_to_be_read(
    make_rig: RigFactory,
) -> None:
    """Another process's entry, not handed and never announced (a lost doorbell, a poll far
    longer than the test), then a handed one of the same conversation: the handed entry says
    that an entry came before it, so the consumer reads the stream and keeps their order."""
    rig = await make_rig(poll_s=60.0)
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.say("c1", "one")
    await rig.idle()
    p = partition_of("c1", rig.store.partitions)
    payload = said("c1", "from elsewhere").to_json()
    assert await rig.store.enqueue_event(p, EventId("far"), payload, 3600)
    await rig.say("c1", "two")
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "one", "from elsewhere", "two"]


async def test_a_doorbell_that_came_with_a_hand_still_gets_its_entry_read(
    make_rig: RigFactory,
) -> None:
    """The door's hand and another process's doorbell wake the consumer in one turn: the
    round reads the stream (a kick says it may hold what was not handed), not only takes."""
    rig = await make_rig(poll_s=60.0)
    await rig.link("ada", "c1")
    relay = await rig.started()
    await rig.join("c1")
    await rig.idle()  # the consumer found the stream's end: it waits for a kick
    p = partition_of("c1", rig.store.partitions)
    here = await rig.store.enqueue_event(p, EventId("here"), said("c1", "one").to_json(), 3600)
    far = await rig.store.enqueue_event(p, EventId("far"), said("c1", "two").to_json(), 3600)
    assert here is not None and far is not None and far.after == here.entry.entry_id
    # In one turn of the loop, before the consumer wakes: the door hands its entry (and kicks),
    # and the doorbell of another process's entry, appended just after it, kicks again.
    relay.hand(p, here)
    relay.kick(p)
    await relay.wait_idle(timeout_s=5.0)
    assert rig.rasa.timeline("ada") == [JOINED, "one", "two"]


async def test_an_event_another_process_enqueued_wakes_the_consumer_by_its_doorbell(
    make_rig: RigFactory,
) -> None:
    """No kick and a poll far longer than the test: only the doorbell can wake the consumer."""
    rig = await make_rig(poll_s=60.0)
    await rig.link("ada", "c1")
    relay = await rig.started()
    await rig.join("c1")  # kicked (this process's own enqueue)
    await rig.idle()
    bells = asyncio.create_task(relay.answer_bells())
    try:
        await asyncio.wait_for(relay.listening.wait(), 10)
        p = partition_of("c1", rig.store.partitions)
        for i, text in enumerate(("from", "elsewhere")):
            payload = said("c1", text).to_json()
            assert await rig.store.enqueue_event(p, EventId(f"far-{i}"), payload, 3600, ring=True)
        await rig.idle()
        assert rig.rasa.timeline("ada") == [JOINED, "from", "elsewhere"]
    finally:
        bells.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await bells


class StalledPush:
    """A push of `text` that stalls in Rasa until `release`. If its caller goes away meanwhile,
    Rasa lands it all the same (it has read the request), just after the next look for it in
    the tracker: a delivery that looked before it landed would push it twice."""

    def __init__(self, rig: Rig, text: str) -> None:
        self.rig, self.text = rig, text
        self.in_flight, self.release, self._looked = (
            asyncio.Event(),
            asyncio.Event(),
            asyncio.Event(),
        )
        self._landings: list[asyncio.Task[None]] = []
        self._has_marker = rig.rasa.has_marker
        rig.rasa.has_marker = self._look  # type: ignore[method-assign]
        rig.rasa.on_push = self._stall

    async def _look(self, sender: SenderId, marker: str) -> bool:
        found = await self._has_marker(sender, marker)
        self._looked.set()
        return found

    async def _stall(self, call: Call) -> None:
        if call.text != self.text:
            return
        self.rig.rasa.on_push = None
        self.in_flight.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self._landings.append(asyncio.create_task(self._land(call)))
            raise

    async def _land(self, call: Call) -> None:
        await self._looked.wait()
        self.rig.rasa.tracker.setdefault(call.sender, []).append(call)

    async def landed(self) -> None:
        """Until whatever was cut short has landed."""
        await asyncio.gather(*self._landings)


async def test_a_lease_taken_again_mid_push_lets_that_push_finish_and_shows_it_once(
    make_rig: RigFactory,
) -> None:
    """Our own lease lapsed and was taken again while a push was in flight: the push finishes,
    and the new consumer starts after it."""
    rig = await make_rig()
    await rig.link("ada", "c1")
    relay = await rig.started()
    await rig.join("c1")
    await rig.idle()
    push = StalledPush(rig, "hello")
    await rig.say("c1", "hello")
    await push.in_flight.wait()
    assert await rig.store.redis.delete(rig.store.keys.partition_lease(0))  # it lapsed...
    await relay.renew_leases()  # ...and we took it again
    push.release.set()
    await push.landed()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]
    assert len(rig.rasa.pushes("ada")) == 2  # the join, and "hello" once


async def test_a_partition_given_back_mid_push_lets_that_push_finish_and_shows_it_once(
    make_rig: RigFactory,
) -> None:
    """A second relay arrives while the first pushes into a partition that is no longer in its
    share: the push finishes before the lease is given back."""
    rig = await make_rig(partitions=2)
    by_partition = {partition_of(ConversationId(f"c{i}"), 2): f"c{i}" for i in range(8)}
    conversation = by_partition[1]  # the partition given back
    await rig.link("ada", conversation)
    a = await rig.started("relay-a")
    await rig.join(conversation)
    await rig.idle(a)
    push = StalledPush(rig, "hello")
    await rig.say(conversation, "hello")
    await push.in_flight.wait()
    b = rig.relay("relay-b")
    await b.renew_leases()  # counted live, nothing free yet
    giving_back = asyncio.create_task(a.renew_leases())
    # Until it no longer consumes partition 1 (a state with no event of its own), each turn
    # of the loop a step of its lease round.
    while a.owns(1):  # noqa: ASYNC110
        await asyncio.sleep(0)
    push.release.set()
    await giving_back
    await b.renew_leases()
    assert 1 in b.owned_partitions
    await push.landed()
    await rig.idle(b)
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]


async def test_a_consumer_whose_lease_was_taken_again_leaves_its_retries_to_the_new_one(
    make_rig: RigFactory,
) -> None:
    """The stale consumer ends after its attempt in hand, not after every retry of it: a
    conversation failing for long does not hold up the partition's others behind the restart."""
    rig = await make_rig(max_attempts=50)
    await rig.link("ada", "c1")
    await rig.link("bob", "c2")
    relay = await rig.started()
    await rig.join("c1")
    await rig.join("c2")
    await rig.idle()
    bob_served = asyncio.Event()
    retaken = False

    async def on_push(call: Call) -> None:
        nonlocal retaken
        if call.text == "hi":
            bob_served.set()
        if call.text != "stuck":
            return
        if not retaken:
            retaken = True
            assert await rig.store.redis.delete(rig.store.keys.partition_lease(0))
            await relay.renew_leases()
            await rig.say("c2", "hi")
            raise RetryableUpstreamError("Rasa unreachable: TimeoutError")
        await bob_served.wait()  # a retry by the stale consumer would wait here for ever

    rig.rasa.on_push = on_push
    await rig.say("c1", "stuck")
    async with asyncio.timeout(10):
        await bob_served.wait()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "stuck"]
    assert rig.rasa.timeline("bob") == [JOINED, "hi"]


async def test_a_consumer_whose_lease_was_taken_again_does_not_wait_out_a_backoff(
    make_rig: RigFactory,
) -> None:
    """The new consumer starts only once the stale one has ended: a backoff the stale one
    waited out after its failed attempt (up to the 30 s cap) would stall the whole partition."""
    rig = await make_rig(backoff_base_s=30.0, max_attempts=50)
    await rig.link("ada", "c1")
    relay = await rig.started()
    await rig.join("c1")
    await rig.idle()
    rig.clock.frozen = True  # a backoff waited out must not make the lease look lapsed
    slept = stale_sleeps(relay)
    retaken = retake_lease_at(rig, relay, "stuck")
    await rig.say("c1", "stuck")
    await rig.idle()
    assert retaken()
    assert rig.rasa.timeline("ada") == [JOINED, "stuck"]  # the new consumer's retry
    assert slept == []
