"""Handed entries against the stream's other writers: a round that takes what the door handed,
without reading the stream, must not then wait for the poll while the stream holds an entry
that was not handed (another process's, whose doorbell woke the consumer together with a hand;
a timer this very round fired)."""

from __future__ import annotations

import pytest

from bridge.handoff import Handoff, State, TimerFired, TimerKind, Timing
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store.base import partition_of

from .conftest import JOINED, RigFactory, said

S, C = SenderId("ada"), ConversationId("c1")
LONG_POLL_S = 60.0  # far longer than the test: only a kick or a read can move the consumer


@pytest.mark.xfail(
    strict=True,
    reason="a round that took handed entries idles without reading the stream, though the "
    "kick it woke on also announced another process's entry (coalesced with the hand's)",
)
async def test_a_doorbell_that_came_with_a_hand_still_gets_its_entry_read(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(poll_s=LONG_POLL_S)
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


@pytest.mark.xfail(
    strict=True,
    reason="a round that fires timers and then takes handed entries never reads the fired "
    "timer's entry: it idles until the poll",
)
async def test_a_timer_fired_by_a_round_that_took_handed_entries_is_worked_without_the_poll(
    make_rig: RigFactory,
) -> None:
    rig = await make_rig(
        poll_s=LONG_POLL_S, timer_poll_s=0.0, timing=Timing(user_silence_ms=300_000)
    )
    now_ms = int(rig.clock() * 1000)
    since = now_ms - 3_600_000
    # ada with Anna, user silence live an hour from now (not due during the test).
    h = Handoff(State.WITH_AGENT, C, "Anna", since_ms=since, changed_ms=since, agent_ms=since)
    live = h.with_timer(TimerKind.USER_SILENCE, now_ms + 3_600_000)
    assert await rig.store.save_handoff(S, live.to_fields(), 0)
    await rig.store.link(S, C)
    await rig.started()
    await rig.idle()  # the consumer found the stream's end: it waits for a kick
    # A stale arming due now: it fires at the next round (and is then ignored, the record
    # naming another due), but its entry must be read and worked like any other.
    await rig.store.arm_timer(0, TimerFired(TimerKind.USER_SILENCE, C, since, now_ms - 1_000))
    await rig.say("c1", "hello")  # handed and kicked: the next round fires, then takes it
    await rig.idle()
    assert rig.rasa.timeline("ada") == ["hello"]
