"""Webhook delivery: signing as 8x8 does, retries, give-up, per-conversation order, early events."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest

from bridge.eightbyeight.signature import jwk_thumbprint, jwk_to_public_key
from bridge.simulator import Delivery, Simulator
from bridge.simulator.delivery import Deliverer
from bridge.simulator.faults import Faults
from bridge.simulator.keys import SigningKeys
from tests.simulator.conftest import (
    FAST_RETRIES,
    MakeSim,
    Received,
    Receiver,
    gw_create,
    settle,
    verify_signature,
)

EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


async def test_an_event_is_signed_and_shaped_as_8x8_sends_it(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    before = int(time.time() * 1000)
    cid = await gw_create(http, sim)
    await settle(sim)
    first = receiver.events()[0]
    assert first.header("content-type") == "application/json"
    assert first.header("x-8x8-tenant-id") == "t1"
    assert first.header("x-8x8-customer-id") == "c1"
    assert first.header("x-8x8-retry") == "0"
    assert EVENT_ID.match(first.header("x-8x8-event-id"))
    assert before <= int(first.header("x-8x8-transmission-time")) <= before + 5000
    # Compact JSON: the checksum covers exactly these bytes.
    assert first.body == json.dumps(first.json, separators=(",", ":")).encode()
    assert first.json["conversationId"] == cid
    kid = await verify_signature(http, sim, first)
    jwk = sim.keys.jwk(kid)
    assert jwk is not None
    assert kid == sim.kid == jwk_thumbprint(jwk_to_public_key(jwk))  # RFC 7638
    ids = [r.header("x-8x8-event-id") for r in receiver.events()]
    assert len(set(ids)) == len(ids)  # every event its own id


async def test_a_tampered_body_fails_verification(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    from bridge.errors import SignatureError

    await gw_create(http, sim)
    await settle(sim)
    got = receiver.events()[0]
    tampered = Received(got.headers, got.body.replace(b"created", b"deleted"), 200)
    assert tampered.body != got.body
    with pytest.raises(SignatureError):
        await verify_signature(http, sim, tampered)


async def test_retries_keep_the_event_id_and_count_up(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    receiver.answer(500, 503)
    await gw_create(http, sim)
    await settle(sim)
    first_event = receiver.received[:3]
    assert [r.answered for r in first_event] == [500, 503, 200]
    assert len({r.header("x-8x8-event-id") for r in first_event}) == 1
    assert [r.header("x-8x8-retry") for r in first_event] == ["0", "1", "2"]
    times = [int(r.header("x-8x8-transmission-time")) for r in first_event]
    assert times[0] < times[1] < times[2]  # fresh on every attempt (retries wait >= 20 ms)
    for attempt in first_event:
        await verify_signature(http, sim, attempt)  # each retry is signed anew
    attempts = [d for d in sim.deliveries if d.event_id == first_event[0].header("x-8x8-event-id")]
    assert [(d.retry, d.status, d.final) for d in attempts] == [
        (0, 500, False),
        (1, 503, False),
        (2, 200, True),
    ]


async def test_an_event_is_given_up_after_the_last_retry_and_the_lane_moves_on(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    receiver.answer(*[500] * (len(FAST_RETRIES) + 1))
    cid = await gw_create(http, sim)
    await settle(sim)
    first_id = receiver.received[0].header("x-8x8-event-id")
    attempts = [d for d in sim.deliveries if d.event_id == first_id]
    assert [d.retry for d in attempts] == list(range(len(FAST_RETRIES) + 1))
    assert attempts[-1].gave_up and not any(d.final for d in attempts[:-1])
    # The conversation's later events still go out, in order.
    assert receiver.types(cid) == ["CONVERSATION_UPDATE", "QUEUED"]


async def test_a_timeout_counts_as_a_failure(
    http: aiohttp.ClientSession, make_sim: MakeSim, receiver: Receiver
) -> None:
    sim = await make_sim(delivery_timeout_s=0.2, delivery_retry_delays=(0.01,))
    receiver.delay_s = 0.5
    await gw_create(http, sim)
    await _attempts(sim, 2)
    first = sim.deliveries[:2]
    assert [d.status for d in first] == [None, None]
    assert first[0].error and "no answer within" in first[0].error
    assert first[1].gave_up


async def test_one_event_in_flight_per_conversation_but_conversations_run_concurrently(
    make_sim: MakeSim, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    sim = await make_sim(delivery_retry_delays=(0.05,) * 40)
    blocked: set[str] = set()

    def decide(got: Received) -> int | None:
        return 500 if got.json.get("conversationId") in blocked else None

    receiver.decide = decide
    slow = await gw_create(http, sim)
    blocked.add(slow)
    await sim.desk.accept(slow)
    fast = await gw_create(http, sim)
    # The other conversation is delivered while the first one's event keeps failing...
    await sim.wait_for_deliveries(lambda d: d.conversation_id == fast and d.event_type == "QUEUED")
    so_far = [r for r in receiver.received if r.json.get("conversationId") == slow]
    assert so_far and all(r.answered == 500 for r in so_far)
    assert len({r.header("x-8x8-event-id") for r in so_far}) == 1  # only its first event
    blocked.clear()
    await settle(sim)
    # ...and once it recovers, its events arrive in their order, each after the one before.
    assert receiver.types(slow) == [
        "CONVERSATION_UPDATE",
        "CONVERSATION_UPDATE",
        "QUEUED",
        "MEMBERS_CHANGED",
        "CONVERSATION_UPDATE",
    ]
    sequence = [
        r.header("x-8x8-event-id")
        for r in receiver.received
        if r.json.get("conversationId") == slow
    ]
    # All attempts of an event come before the next event's first attempt.
    firsts = list(dict.fromkeys(sequence))
    assert sequence == sorted(sequence, key=firsts.index)


async def test_events_follow_the_create_answer(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    seen_requests: list[int] = []
    receiver.decide = lambda got: seen_requests.append(len(sim.requests)) or None
    await gw_create(http, sim)
    await settle(sim)
    assert seen_requests[0] == 1  # the create was answered (and recorded) before the event


async def test_a_held_lane_sends_nothing_until_released(receiver: Receiver) -> None:
    # The create's 202 goes out while its conversation's lane is held (timing alone would
    # hide a missing hold in the end-to-end test above).
    recorded: list[Delivery] = []
    deliverer = Deliverer(
        tenant_id="t1",
        customer_id="c1",
        retry_delays=(),
        timeout_s=1.0,
        keys=SigningKeys(),
        faults=Faults(),
        target=lambda conversation_id: receiver.url,
        record=recorded.append,
    )
    await deliverer.start()
    try:
        queued = deliverer.enqueue("c-1", {"eventType": "QUEUED"}, hold=True)
        deliverer.enqueue("c-1", {"eventType": "AGENT_JOINED"})
        other = deliverer.enqueue("c-2", {"eventType": "QUEUED"})
        await asyncio.wait_for(other.settled.wait(), 2)
        assert deliverer.held("c-1")  # parked at its gate: nothing of c-1 can be on its way
        assert [d.conversation_id for d in recorded] == ["c-2"] and deliverer.pending == 2
        deliverer.release("c-1")
        await asyncio.wait_for(deliverer.wait_idle(), 2)
        assert queued.delivered
        assert [r.event_type for r in receiver.received] == ["QUEUED", "QUEUED", "AGENT_JOINED"]
    finally:
        await deliverer.close()


async def test_early_events_arrive_before_the_create_is_answered(
    http: aiohttp.ClientSession, make_sim: MakeSim, receiver: Receiver
) -> None:
    sim = await make_sim(early_events=True)
    seen_requests: list[int] = []
    receiver.decide = lambda got: seen_requests.append(len(sim.requests)) or None
    receiver.answer(500)  # a failed first attempt is still "attempted"
    cid = await gw_create(http, sim)
    assert seen_requests == [0]
    await settle(sim)
    assert receiver.types(cid)[0] == "CONVERSATION_UPDATE"
    assert seen_requests[0] == 0


async def test_injected_delivery_failures_send_nothing(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    sim.faults.fail_next("webhook_delivery", count=2)
    await gw_create(http, sim)
    await settle(sim)
    first = sim.deliveries[:3]
    assert [(d.retry, d.status) for d in first] == [(0, None), (1, None), (2, 200)]
    assert first[0].error and "injected" in first[0].error
    assert receiver.received[0].header("x-8x8-retry") == "2"


async def test_the_target_is_looked_up_on_every_attempt(
    http: aiohttp.ClientSession, make_sim: MakeSim, receiver: Receiver
) -> None:
    sim = await make_sim(webhook_url=None, delivery_retry_delays=(0.05,) * 20)
    await gw_create(http, sim)
    await _attempts(sim, 2)
    assert sim.deliveries[0].error == "no webhook URL is set"
    sim.set_webhook_url(receiver.url)
    await settle(sim)
    assert receiver.types() == ["CONVERSATION_UPDATE", "CONVERSATION_UPDATE", "QUEUED"]


async def test_wait_for_deliveries_times_out_with_what_it_saw(sim: Simulator) -> None:
    with pytest.raises(TimeoutError, match="no delivered event matched"):
        await sim.wait_for_deliveries(lambda d: True, timeout=0.1)


async def _attempts(sim: Simulator, count: int) -> None:
    """Until the simulator has recorded `count` delivery attempts (successful or not)."""
    notices = sim.subscribe()  # before the check, so no attempt slips between
    async with asyncio.timeout(3):
        while len(sim.deliveries) < count:
            await anext(notices)
    notices.close()
