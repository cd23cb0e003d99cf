"""Recovery of what 8x8 gave up on: agent messages and joins/leaves the webhook never brought,
found in 8x8's lists (simulator over HTTP, both APIs) and relayed through the conversation's
stream, once, whichever path sees them first."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from bridge.handoff import Handoff, State
from bridge.ids import ConversationId, SenderId
from bridge.recovery import Sweeper, SweepResult
from bridge.relay.identity import listed_identities
from bridge.store import recovery_state
from tests.core.conftest import BridgeFactory, Harness
from tests.support.waiting import eventually, relay_settled

JOINED = "#EXTERNAL_agent_joined"
LEFT = "#EXTERNAL_agent_left"
QUEUED = "#EXTERNAL_handoff_queued"
MANUAL = {"recovery_interval_s": 3600.0}  # no periodic sweep: the tests sweep themselves


async def bridge(make_bridge: BridgeFactory, horizon_s: float = 0.0, **extra: object) -> Harness:
    h = await make_bridge(recovery_horizon_s=horizon_s, **MANUAL, **extra)
    loop = h.runtime.recovery
    assert loop is not None
    await eventually(lambda: loop.sweeps >= 1, what="the start-up sweep")
    await loop.stop()  # from here on, the test sweeps
    return h


def sweeper(h: Harness) -> Sweeper:
    assert h.runtime.recovery is not None
    return h.runtime.recovery.sweeper


async def sweep(h: Harness) -> SweepResult:
    result = await sweeper(h).sweep()
    await relay_settled(h.store)
    return result


async def with_agent(h: Harness, sender: str = "ada") -> ConversationId:
    cid = await h.escalate(sender)
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.settled()
    assert seen(h, sender) == [JOINED]
    return cid


def seen(h: Harness, sender: str) -> list[str]:
    """What the user saw once an agent was looked for (the queue notice left out)."""
    return [t for t in h.rasa.timeline(sender) if t != QUEUED]


def webhook_off(h: Harness) -> None:
    """8x8 gives up on every event at once from now on (as after its retries ran out)."""
    h.sim.set_retry_delays(())
    h.sim.set_webhook_url(None)


def webhook_on(h: Harness) -> None:
    h.sim.set_webhook_url(f"{h.url}/8x8/events")


async def handoff(h: Harness, sender: str = "ada") -> Handoff:
    record = await h.store.load_handoff(SenderId(sender))
    return Handoff.from_fields(record.fields) if record else Handoff()


async def test_messages_8x8_gave_up_on_are_relayed_once_in_order(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge)
    cid = await with_agent(h)
    webhook_off(h)
    for text in ("ok", "let me check", "ok"):  # the same text twice is two messages
        await h.sim.desk.say(cid, text)
    await h.sim.idle()
    assert sum(d.gave_up for d in h.sim.deliveries) == 3
    webhook_on(h)
    first = await sweep(h)
    assert (first.conversations, first.offered) == (1, 3)
    again = await sweep(h)
    assert again.offered == 0
    assert seen(h, "ada") == [JOINED, "ok", "let me check", "ok"]
    assert h.runtime.metrics.recovered_messages._value.get() == 3


async def test_what_the_webhook_delivered_is_not_recovered(make_bridge: BridgeFactory) -> None:
    h = await bridge(make_bridge)
    cid = await with_agent(h)
    await h.sim.desk.say(cid, "hello")
    await h.sim.desk.say(cid, "hello")
    await h.settled()
    result = await sweep(h)
    assert (result.conversations, result.offered, result.waiting) == (1, 0, 0)
    assert seen(h, "ada") == [JOINED, "hello", "hello"]
    assert h.runtime.metrics.recovered_messages._value.get() == 0


async def test_a_message_8x8_still_retries_waits_for_the_horizon_and_shows_once(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge, horizon_s=600.0)
    cid = await with_agent(h)
    h.sim.set_retry_delays((3.0,))
    h.sim.faults.fail_next("webhook_delivery")  # the first attempt fails; the retry comes late
    await h.sim.desk.say(cid, "late")
    await eventually(lambda: len(h.sim.deliveries) >= 1 and h.sim.deliveries[-1].error is not None)
    found = await sweep(h)  # recovery sees it first, while 8x8 still holds its event
    assert (found.offered, found.waiting) == (0, 1)
    assert found.due_s is not None
    await h.settled()  # then the webhook's retry brings it
    after = await sweep(h)
    assert (after.offered, after.waiting) == (0, 0)
    assert seen(h, "ada") == [JOINED, "late"]


async def test_recovery_offering_a_message_the_webhook_queued_first_shows_it_once(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge)
    cid = await with_agent(h)
    await h.runtime.relay.stop()  # the webhook's event waits in the stream, undelivered
    await h.sim.desk.say(cid, "twice?")
    await h.sim.idle()
    result = await sweeper(h).sweep()
    assert result.offered == 1  # not delivered yet: offered, and queued behind its twin
    await make_bridge(recovery_horizon_s=0.0, **MANUAL)  # a relay that consumes both
    await relay_settled(h.store)
    assert seen(h, "ada") == [JOINED, "twice?"]


async def test_two_sweeps_at_once_one_sweeps_and_each_message_shows_once(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge)
    other = await bridge(make_bridge)
    cid = await with_agent(h)
    webhook_off(h)
    await h.sim.desk.say(cid, "once")
    await h.sim.idle()
    results = await asyncio.gather(sweeper(h).sweep(), sweeper(other).sweep())
    assert sorted(r.swept for r in results) == [False, True]
    await sweeper(other).sweep()  # later sweeps find it queued or delivered
    await relay_settled(h.store)
    assert seen(h, "ada") == [JOINED, "once"]


async def test_a_message_found_after_later_ones_arrives_late_after_them(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge)
    cid = await with_agent(h)
    webhook_off(h)
    await h.sim.desk.say(cid, "first")
    await h.sim.idle()
    webhook_on(h)
    await h.sim.desk.say(cid, "second")
    await h.settled()
    await sweep(h)
    assert seen(h, "ada") == [JOINED, "second", "first"]


async def test_a_missed_leave_is_recovered_and_the_user_is_back_with_the_bot(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge)
    cid = await with_agent(h)
    webhook_off(h)
    await h.sim.desk.say(cid, "bye now")
    await h.sim.desk.leave(cid)
    await h.sim.idle()
    result = await sweep(h)
    assert result.offered == 2
    assert seen(h, "ada") == [JOINED, "bye now", LEFT]
    assert not (await handoff(h)).active
    assert (await sweep(h)).conversations == 0  # no longer live


async def test_a_missed_join_is_recovered(make_bridge: BridgeFactory, api: str) -> None:
    h = await bridge(make_bridge)
    cid = await h.escalate("ada")
    await h.settled()
    webhook_off(h)
    await h.sim.desk.accept(cid, agent_name="Anna")
    if api == "chat-v2":  # v2's participants do not say who is in: the agent's words tell
        await h.sim.desk.say(cid, "hi, Anna here")
    await h.sim.idle()
    await sweep(h)
    assert (await handoff(h)).state is State.WITH_AGENT
    assert seen(h, "ada")[:1] == [JOINED]


async def test_a_bounded_sweep_goes_on_where_the_last_one_stopped(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge, recovery_max_conversations=1)
    ada, bo = await with_agent(h, "ada"), await with_agent(h, "bo")
    webhook_off(h)
    await h.sim.desk.say(ada, "for ada")
    await h.sim.desk.say(bo, "for bo")
    await h.sim.idle()
    one, two = await sweep(h), await sweep(h)
    assert (one.conversations, two.conversations) == (1, 1)
    assert h.rasa.texts("ada") == ["for ada"]
    assert h.rasa.texts("bo") == ["for bo"]


async def test_a_503_from_the_webhook_makes_recovery_look_soon(make_bridge: BridgeFactory) -> None:
    h = await make_bridge(recovery_horizon_s=0.0, **MANUAL)
    loop = h.runtime.recovery
    assert loop is not None
    await eventually(lambda: loop.sweeps >= 1, what="the start-up sweep")
    cid = await with_agent(h)
    h.sim.set_retry_delays(())
    h.sim.rotate_key()  # the bridge must fetch the new key, and 8x8's key service fails
    h.sim.faults.fail_next("jwk", count=50)
    await h.sim.desk.say(cid, "during the outage")
    await h.sim.idle()
    assert h.sim.deliveries[-1].status == 503 and h.sim.deliveries[-1].gave_up
    h.sim.faults.clear()
    await eventually(lambda: "during the outage" in h.rasa.texts("ada"), what="recovery")
    assert h.rasa.texts("ada") == ["during the outage"]


# Chat API v2 only: a Gateway message carries 8x8's `createdAt`, which only makes it older.
@pytest.mark.parametrize("api", ["chat-v2"])
async def test_a_leave_waits_while_a_message_before_it_is_inside_the_horizon(
    make_bridge: BridgeFactory,
) -> None:
    h = await bridge(make_bridge)
    cid = await with_agent(h)
    webhook_off(h)
    await h.sim.desk.say(cid, "last words")
    await h.sim.desk.leave(cid)
    await h.sim.idle()
    now = [time.time()]
    base = sweeper(h)
    config = replace(base.config, horizon_s=600.0)
    late = Sweeper(base.store, base.chat, h.runtime.metrics, config, clock=lambda: now[0])
    assert (await late.sweep()).waiting == 2  # both found missing now
    now[0] += 3600
    # As if 8x8 listed the message only now (lists may lag): the leave is ripe, the message not.
    [message] = listed_identities(["last words"])
    item = f"{cid}:m:{message.digest}:{message.ordinal}"
    await recovery_state.forget_seen(base.store, item)
    await recovery_state.first_seen(base.store, item, int(now[0] * 1000))
    result = await late.sweep()
    assert (result.offered, result.waiting) == (0, 2)
    now[0] += 3600
    assert (await late.sweep()).offered == 2
    await relay_settled(h.store)
    assert seen(h, "ada") == [JOINED, "last words", LEFT]
