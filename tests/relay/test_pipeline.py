"""Lanes that outlive their batch (bridge/relay/pipeline.py) through the consumer: entries that
arrive while a lane works are read and dispatched at once, each conversation keeps its order
across batches, and a lane that fails leaves its entries to be read again, in order, once."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from bridge.eightbyeight.events import EventKind
from bridge.errors import StoreUnavailable
from bridge.handoff import Handoff, State
from bridge.ids import ConversationId, EventId, SenderId
from bridge.relay import Relay
from bridge.relay.lanes import Key
from bridge.relay.pipeline import Pipeline
from bridge.store import StreamEntry

from .conftest import JOINED, Call, Rig, RigFactory, event, said
from .test_consumer import counted_reads
from .test_lane_delivery import linked, signalled


async def joined(make_rig: RigFactory, **conversations: str) -> Rig:
    """Each conversation linked to its sender and joined by an agent, all of it delivered, and
    the relay's consumer idle."""
    rig = await linked(make_rig, **conversations)
    await rig.started()
    for conversation in conversations:
        await rig.join(conversation)
    await rig.idle()
    return rig


async def link_with_agent(rig: Rig, sender: str, conversation: str) -> None:
    """The sender's link made with an agent already in the chat: its messages are words for
    the user only, which a run pushes together."""
    now = int(rig.clock() * 1000)
    c = ConversationId(conversation)
    h = Handoff(State.WITH_AGENT, c, "Anna", since_ms=now, changed_ms=now, agent_ms=now)
    assert await rig.store.save_handoff(SenderId(sender), h.to_fields(), 0)
    await rig.store.link(SenderId(sender), c)


def stall_and_watch(
    rig: Rig, stall: str, watch: str
) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
    """Rasa keeps the push of the text `stall` until `release` is set (`stalled`: it is in
    Rasa's hands), and `shown` is set once the text `watch` is pushed."""
    stalled, release, shown = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def on_push(call: Call) -> None:
        if call.text == stall:
            stalled.set()
            await release.wait()
        elif call.text == watch:
            shown.set()

    rig.rasa.on_push = on_push
    return stalled, release, shown


def texts(rig: Rig, sender: str) -> list[str]:
    """Every push into the sender's tracker, in order (an intent as its name)."""
    return [c.intent or c.text or "" for c in rig.rasa.pushes(sender)]


async def test_an_entry_that_arrives_while_a_push_stalls_is_delivered_before_it_ends(
    make_rig: RigFactory,
) -> None:
    rig = await joined(make_rig, c1="ada", c2="bob")
    stalled, release, bob_shown = stall_and_watch(rig, "wait for me", "go ahead")
    await rig.say("c1", "wait for me")
    await signalled(stalled)
    await rig.say("c2", "go ahead")  # enqueued after ada's push went into Rasa's hands
    await signalled(bob_shown)
    assert rig.rasa.timeline("bob") == [JOINED, "go ahead"]
    assert rig.rasa.timeline("ada") == [JOINED]  # her push has not ended
    release.set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "wait for me"]
    assert await rig.store.read_events(0, 10) == []


async def test_entries_arriving_mid_lane_keep_each_conversations_order(
    make_rig: RigFactory,
) -> None:
    rig = await joined(make_rig, c1="ada", c2="bob")
    stalled, release, bob_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stall_a1(call: Call) -> None:
        if call.text == "a1":
            stalled.set()
            await release.wait()
        elif "b3" in [c.text for c in rig.rasa.calls]:  # b3 may share a push with b2
            bob_done.set()

    rig.rasa.on_push = stall_a1
    await rig.say("c1", "a1")  # its push stalls: what follows of ada's queues behind it
    await signalled(stalled)
    for k in (2, 3):
        await rig.say("c2", f"b{k - 1}")
        await rig.say("c1", f"a{k}")
    await rig.say("c2", "b3")
    await signalled(bob_done)
    assert texts(rig, "ada") == ["EXTERNAL_agent_joined", "a1"]  # nothing of hers overtook a1
    release.set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1", "a2", "a3"]
    assert rig.rasa.timeline("bob") == [JOINED, "b1", "b2", "b3"]
    assert not [c for c in rig.rasa.calls if c.kind == "lookup"]  # nothing was retried


async def test_a_lane_that_fails_mid_pipeline_has_its_entries_read_again_in_order_once(
    make_rig: RigFactory,
) -> None:
    """a1's ack fails (Redis) once a2 and a3 are queued behind it in ada's lane and bob's b1,
    enqueued after them, has been pushed: ada's lane drops what it had, and once every lane
    has ended the consumer reads from the stream's start: a1 is found in the tracker, a2 and
    a3 pushed after it, b1 (finished) not read again."""
    rig = await joined(make_rig, c1="ada", c2="bob")
    a1_pushed, b1_shown = asyncio.Event(), asyncio.Event()
    failed = False
    ack_message = rig.store.ack_message

    async def failing_a1(
        partition: int, entry_id: str, owner: str, *args: Any, **kwargs: Any
    ) -> bool:
        nonlocal failed
        if args[0] == "c1" and not failed:
            failed = True
            await b1_shown.wait()
            raise StoreUnavailable("redis unavailable: ConnectionError")
        return await ack_message(partition, entry_id, owner, *args, **kwargs)

    async def note_pushes(call: Call) -> None:
        if call.text == "a1":
            a1_pushed.set()
        if call.text == "b1":
            b1_shown.set()

    rig.store.ack_message = failing_a1  # type: ignore[method-assign]
    rig.rasa.on_push = note_pushes
    await rig.say("c1", "a1")
    await signalled(a1_pushed)  # a1 is a unit of its own, its ack about to wait for b1
    await rig.say("c1", "a2", "a3")
    await rig.say("c2", "b1")
    await rig.idle()
    assert failed
    assert texts(rig, "ada") == ["EXTERNAL_agent_joined", "a1", "a2", "a3"]  # each pushed once
    assert rig.rasa.timeline("ada") == [JOINED, "a1", "a2", "a3"]
    lookups = [c.marker for c in rig.rasa.calls if c.kind == "lookup"]
    assert len(lookups) == 1  # a1's second attempt looked for it, and found it
    assert texts(rig, "bob") == ["EXTERNAL_agent_joined", "b1"]
    assert await rig.store.read_events(0, 10) == []


async def test_a_conversation_linked_while_its_entry_is_in_a_lane_keeps_its_order(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """c1's first entry is in its conversation's lane, its sender looked up before the link,
    when c1 is linked (an agent with the user already) and two more of its messages are read
    together: planned with the sender known (a run, in the sender's lane), they wait for the
    conversation's lane to end, which holds the first; the run then goes one entry at a time,
    behind the held one, and all are released in order."""
    rig = await make_rig(hold_s=60.0)
    await rig.started()
    looked, at_barrier = asyncio.Event(), asyncio.Event()
    sender_of = rig.store.sender_of

    async def stalled_in_its_lane(conversation: ConversationId) -> SenderId | None:
        found = await sender_of(conversation)
        task = asyncio.current_task()
        if task is not None and task.get_name().startswith("relay-p0-lane") and not looked.is_set():
            looked.set()
            await at_barrier.wait()  # answers what it found before the link
        return found

    lane_ended = Pipeline.lane_ended

    async def noted(self: Pipeline[Any], key: Key) -> None:
        at_barrier.set()
        await lane_ended(self, key)

    rig.store.sender_of = stalled_in_its_lane  # type: ignore[method-assign]
    monkeypatch.setattr(Pipeline, "lane_ended", noted)
    await rig.say("c1", "first")
    await signalled(looked)
    await link_with_agent(rig, "dee", "c1")
    for text in ("second", "third"):  # not handed: read together after the kick
        payload = said("c1", text).to_json()
        assert await rig.store.enqueue_event(0, EventId(text), payload, 3600)
    rig.kick(0)
    await rig.idle()
    assert at_barrier.is_set()
    assert rig.rasa.timeline("dee") == ["first", "second", "third"]
    assert rig.rasa.sizes == [1, 1, 1]  # released one at a time
    assert await rig.store.held_conversations(0) == {}


async def test_held_entries_are_released_only_once_no_lane_works_on_them(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """c1 is held; its next entry is in its lane, going behind the held one, when c1 is
    linked: the consumer lets every lane end before it releases c1's held entries, so the
    one being held is released with them, in order, not left behind."""
    rig = await make_rig(hold_s=60.0)
    await rig.started()
    await rig.say("c1", "first")
    await rig.idle()
    assert set(await rig.store.held_conversations(0)) == {"c1"}
    holding, quieting = asyncio.Event(), asyncio.Event()
    hold_event = rig.store.hold_event

    async def stalled_hold(
        partition: int, conversation: ConversationId, entry: StreamEntry, *args: Any
    ) -> bool:
        if entry.event_id == "second":
            holding.set()
            await quieting.wait()
        return await hold_event(partition, conversation, entry, *args)

    quiet = Pipeline.quiet

    async def noted(self: Pipeline[Any]) -> None:
        quieting.set()
        await quiet(self)

    rig.store.hold_event = stalled_hold  # type: ignore[method-assign]
    monkeypatch.setattr(Pipeline, "quiet", noted)
    await rig.enqueue(said("c1", "second"), "second")
    await signalled(holding)
    await link_with_agent(rig, "dee", "c1")
    rig.kick(0)
    await rig.idle()
    assert rig.rasa.timeline("dee") == ["first", "second"]
    assert await rig.store.held_conversations(0) == {}


async def test_past_the_bound_of_entries_in_hand_the_consumer_waits_for_its_lanes(
    make_rig: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a batch of 2, the consumer takes a batch only while at most 2 entries are in hand:
    three of ada's are (her first push stalls), so bob's waits, untaken, until ada's lane moves
    on; then it goes, and everything in order."""
    rig = await make_rig(batch=2)
    for conversation, sender in (("c1", "ada"), ("c2", "bob")):
        await rig.link(sender, conversation)
    await rig.started()
    await rig.join("c1")
    await rig.join("c2")
    await rig.idle()
    stalled, release, at_bound = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stall_a1(call: Call) -> None:
        if call.text == "a1":
            stalled.set()
            await release.wait()

    room = Pipeline.room

    async def noted(self: Pipeline[Any], most: int) -> None:
        at_bound.set()
        await room(self, most)

    rig.rasa.on_push = stall_a1
    monkeypatch.setattr(Pipeline, "room", noted)
    await rig.say("c1", "a1")
    await signalled(stalled)
    await rig.say("c1", "a2", "a3")  # in hand with a1: 3 entries
    await rig.say("c2", "b1")
    await signalled(at_bound)
    assert texts(rig, "bob") == ["EXTERNAL_agent_joined"]  # b1 not taken: no room for a batch
    release.set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1", "a2", "a3"]
    assert rig.rasa.timeline("bob") == [JOINED, "b1"]


async def test_once_a_failed_lane_is_behind_it_the_consumer_takes_what_the_door_hands_again(
    make_rig: RigFactory,
) -> None:
    """a1's ack fails once: the consumer lets its lanes end and reads from the stream's start.
    After that it is clean again: ada's a2, handed while bob's b1 is still in the stream (in
    his stalled lane), is taken without reading the stream back."""
    rig = await make_rig(poll_s=60.0)  # a read can only follow a kick, or a handed entry refused
    for conversation, sender in (("c1", "ada"), ("c2", "bob")):
        await rig.link(sender, conversation)
    await rig.started()
    await rig.join("c1")
    await rig.join("c2")
    await rig.idle()
    failed = False
    ack_message = rig.store.ack_message

    async def failing_once(
        partition: int, entry_id: str, owner: str, *args: Any, **kwargs: Any
    ) -> bool:
        nonlocal failed
        if not failed:
            failed = True
            raise StoreUnavailable("redis unavailable: ConnectionError")
        return await ack_message(partition, entry_id, owner, *args, **kwargs)

    rig.store.ack_message = failing_once  # type: ignore[method-assign]
    await rig.say("c1", "a1")
    await rig.idle()
    assert failed and rig.rasa.timeline("ada") == [JOINED, "a1"]
    reads = counted_reads(rig)
    stalled, release, a2_shown = stall_and_watch(rig, "b1", "a2")
    await rig.say("c2", "b1")
    await signalled(stalled)
    await rig.say("c1", "a2")  # enqueued behind b1, which is in hand
    await signalled(a2_shown)
    release.set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1", "a2"]
    assert rig.rasa.timeline("bob") == [JOINED, "b1"]
    assert reads == []  # both taken as handed


async def resting(relay: Relay, partition: int = 0) -> None:
    """Until the partition's consumer rests (waits for a kick or the poll), ready to take a
    handed entry straight to its lane: signalled as it enters its rest (`Relay._idle`
    registers it before its first wait, in the step that signals)."""
    if partition in relay._resting:
        return
    rested = asyncio.Event()
    idle = relay._idle

    async def noted(p: int, *args: Any) -> None:
        if p == partition:
            rested.set()
        await idle(p, *args)

    relay._idle = noted  # type: ignore[method-assign]
    try:
        await signalled(rested)
    finally:
        del relay._idle  # the class's again
    assert partition in relay._resting


async def test_an_entry_handed_to_a_resting_consumer_goes_straight_to_its_lane(
    make_rig: RigFactory,
) -> None:
    """Without waking the consumer (a task step and a turn of the loop per event); behind what
    its lane has, in order. The consumer's poll and the timers' are never due here: either
    rightly wakes it, and at 5 ms the poll could come while the door's round trip is out."""
    quiet = functools.partial(make_rig, poll_s=60.0, timer_poll_s=3600.0)
    rig = await joined(quiet, c1="ada")
    relay = rig.relays[0]
    stalled, release = asyncio.Event(), asyncio.Event()

    async def stall_a1(call: Call) -> None:
        if call.text == "a1":
            stalled.set()
            await release.wait()

    rig.rasa.on_push = stall_a1
    await resting(relay)
    await rig.say("c1", "a1")
    assert not relay._kicks[0].is_set()  # dispatched in the door's turn: nobody woken
    await signalled(stalled)
    await resting(relay)
    await rig.say("c1", "a2")  # queued in ada's lane, behind a1's stalled push
    assert not relay._kicks[0].is_set()
    release.set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1", "a2"]
    assert await rig.store.read_events(0, 10) == []


async def test_a_handed_entry_the_consumer_must_look_at_first_wakes_it(
    make_rig: RigFactory,
) -> None:
    """A conversation whose sender is not cached yet (a read of Redis first), and one that is
    held: the consumer is woken, and works them as before."""
    rig = await joined(make_rig, c1="ada")
    relay = rig.relays[0]
    await rig.link("bob", "c2")
    await resting(relay)
    await rig.say("c2", "first of bob")  # bob's sender is not in the relay's cache
    assert relay._kicks[0].is_set()
    await rig.idle()
    await resting(relay)
    await rig.say("c3", "nobody's")  # no link: held
    await rig.idle()
    await resting(relay)
    await rig.say("c1", "a1")  # something is held: the consumer looks at it first
    assert relay._kicks[0].is_set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1"]
    assert rig.rasa.timeline("bob")[-1] == "first of bob"


async def test_an_entry_read_before_the_door_handed_it_is_not_worked_again_after_a_restart(
    make_rig: RigFactory,
) -> None:
    """On a Cluster the door's enqueue and the consumer's read go over two connections, so the
    consumer can read an entry before the door hands it. Here Bea's join is read and delivered
    (then Anna's), and handed only while bob's lane fails: the consumer forgets its frontier
    and starts again from the stream's start, which must not take Bea's join as new (the
    stream had nothing before it) and announce her again."""
    rig = await make_rig(poll_s=60.0)  # a read can only follow a kick, or a handed entry refused
    for conversation, sender in (("c1", "ada"), ("c2", "bob")):
        await rig.link(sender, conversation)
    relay = await rig.started()
    await rig.join("c1")
    await rig.join("c2")
    await rig.idle()
    bea = event(EventKind.AGENT_JOINED, "c1", agent_name="Bea")
    late = await rig.store.enqueue_event(0, EventId("bea-joined"), bea.to_json(), 3600)
    anna = event(EventKind.AGENT_JOINED, "c1", agent_name="Anna")
    assert await rig.store.enqueue_event(0, EventId("anna-back"), anna.to_json(), 3600)
    assert late is not None and late.after == ""
    rig.kick(0)  # read, not handed (yet)
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED] * 3  # Anna, Bea, Anna again
    failed, looked = False, asyncio.Event()
    ack_message = rig.store.ack_message

    async def failing_b1(
        partition: int, entry_id: str, owner: str, *args: Any, **kwargs: Any
    ) -> bool:
        nonlocal failed
        if not failed:
            failed = True
            relay.hand(0, late, bea)  # the door's hand, late
            raise StoreUnavailable("redis unavailable: ConnectionError")
        looked.set()  # b1 read again from the stream's start
        return await ack_message(partition, entry_id, owner, *args, **kwargs)

    async def noted(call: Call) -> None:
        if call.sender == "ada":
            looked.set()  # Bea's join worked again

    rig.store.ack_message = failing_b1  # type: ignore[method-assign]
    rig.rasa.on_push = noted
    await rig.say("c2", "b1")
    await signalled(looked)
    rig.kick(0)  # whatever came first, b1 is read again
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED] * 3
    assert rig.rasa.timeline("bob") == [JOINED, "b1"]


async def test_a_lane_that_fails_while_its_consumer_stops_is_logged_not_lost(
    make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The relay stops while a1's push is in Rasa's hands; its ack then fails (Redis): the
    consumer, ending, waits for the lane and logs its error."""
    rig = await joined(make_rig, c1="ada")
    relay = rig.relays[0]
    in_rasa, release = asyncio.Event(), asyncio.Event()
    ack_message = rig.store.ack_message

    async def failing(partition: int, entry_id: str, owner: str, *args: Any, **kwargs: Any) -> bool:
        raise StoreUnavailable("redis unavailable: ConnectionError")

    async def stall(call: Call) -> None:
        in_rasa.set()
        await release.wait()

    rig.rasa.on_push = stall
    rig.store.ack_message = failing  # type: ignore[method-assign]
    await rig.say("c1", "a1")
    await signalled(in_rasa)
    stopping = asyncio.create_task(relay.stop(timeout_s=5.0))
    await signalled(relay._stopping)  # the consumer ends its loop, its lane still pushing
    release.set()
    async with asyncio.timeout(10):
        await stopping
    rig.store.ack_message = ack_message  # type: ignore[method-assign]
    errors = [r for r in caplog.records if r.getMessage() == "relay_consumer_error"]
    assert errors and errors[-1].exc_info is not None
    assert isinstance(errors[-1].exc_info[1], StoreUnavailable)
