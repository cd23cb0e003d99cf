"""The relay wired for real, over loopback: simulator (8x8) -> bridge -> Rasa stand-in.

Nothing the agent writes may be lost, duplicated or reordered on its way to the user. Every
branch of the relay is tested in milliseconds in tests/relay/; these check the wiring: the
webhook door, the real Rasa client's HTTP (errors, tracker lookups), holds and links, the
state machine's notifications.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bridge.ids import SenderId
from bridge.rasa.client import BotMessage, RasaClient
from bridge.store.base import Begin, partition_of
from tests.core.conftest import BridgeFactory, Harness, serve_app
from tests.support.rasa_stand_in import RasaStandIn
from tests.support.waiting import eventually

JOINED = "#EXTERNAL_agent_joined"
QUEUED = "#EXTERNAL_handoff_queued"
LEFT = "#EXTERNAL_agent_left"


async def _conversation(h: Harness, sender: str, texts: list[str]) -> None:
    cid = await h.escalate(sender)
    await h.sim.desk.accept(cid, agent_name="Anna")
    for text in texts:
        await h.sim.desk.say(cid, text)


def _seen(h: Harness, sender: str) -> list[str]:
    return h.rasa.timeline(sender)


async def test_agent_texts_arrive_in_order_across_50_conversations(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    texts = {f"user-{i}": [f"m{i}-{k}" for k in range(8)] for i in range(50)}
    await asyncio.gather(*(_conversation(h, s, t) for s, t in texts.items()))
    await h.settled()
    for sender, expected in texts.items():
        seen = _seen(h, sender)
        assert h.rasa.texts(sender) == expected  # in order, each once
        assert seen.index(QUEUED) < seen.index(JOINED) < seen.index(expected[0])


async def test_rasa_down_for_a_while_then_back_delivers_each_text_once_in_order(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    cid = await h.escalate("ada")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.settled()
    h.rasa.down_status = 503
    for k in range(5):
        await h.sim.desk.say(cid, f"t{k}")
    await h.sim.idle()  # 8x8 got its 200s: the events are ours now
    retries = h.runtime.metrics.relay_retries
    await eventually(lambda: retries._value.get() >= 2, 15, "the relay retrying")
    assert h.rasa.texts("ada") == []
    h.rasa.down_status = None
    await h.settled()
    assert h.rasa.texts("ada") == [f"t{k}" for k in range(5)]


async def test_the_same_event_delivered_three_times_is_relayed_once(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    cid = await h.escalate("bob")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.sim.desk.say(cid, "only once")
    await h.settled()
    assert h.rasa.texts("bob") == ["only once"]
    delivery = next(d for d in h.sim.deliveries if b"only once" in d.body and 200 <= d.status < 300)
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with http.post(
                f"{h.url}/8x8/events", data=delivery.body, headers=dict(delivery.headers)
            ) as r:
                assert r.status == 200
                assert (await r.json())["result"] == "duplicate"
    await h.settled()
    assert h.rasa.texts("bob") == ["only once"]
    assert h.runtime.metrics.events_duplicate._value.get() == 2


async def test_a_duplicate_gives_the_relay_its_plan_back(make_bridge: BridgeFactory) -> None:
    """serve's door plans the relay's first step for each event before it knows the event is a
    duplicate; the duplicate's plan goes back to the very rest it was made on (`Relay.unplan`,
    as wired by the runtime), or that rest would plan nothing more until it ended."""
    h = await make_bridge()
    cid = await h.escalate("bob")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.sim.desk.say(cid, "only once")
    await h.settled()
    delivery = next(d for d in h.sim.deliveries if b"only once" in d.body and 200 <= d.status < 300)
    door = h.runtime.door
    made: list[Begin] = []
    plan = door.plan

    def planning(*args: Any) -> Begin | None:
        begin = plan(*args)  # the relay's own plan, as wired
        if begin is not None:
            made.append(begin)
        return begin

    door.plan = planning
    async with aiohttp.ClientSession() as http:
        for _ in range(20):  # a rest ends at each poll (0.2 s): some copies find none
            async with http.post(
                f"{h.url}/8x8/events", data=delivery.body, headers=dict(delivery.headers)
            ) as r:
                assert (r.status, (await r.json())["result"]) == (200, "duplicate")
            if len(made) >= 3:
                break
    assert len(made) >= 3
    assert [b.ticket.rest.planned for b in made] == [0] * len(made)  # type: ignore[attr-defined]
    await h.settled()
    assert h.rasa.texts("bob") == ["only once"]


async def test_an_event_for_a_resting_consumer_is_claimed_by_its_enqueue(
    make_bridge: BridgeFactory,
) -> None:
    """The door's enqueue takes the relay's first step (claim the message, count the attempt,
    read the record) when the partition's consumer rests: its delivery takes no step of its
    own (bridge/relay/begun.py). A rest ends at the poll (0.2 s), which may come between the
    test's look and the door's: of five texts, each sent to a resting consumer, most go so."""
    h = await make_bridge()
    cid = await h.escalate("bob")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.sim.desk.say(cid, "first")
    await h.settled()
    relay = h.runtime.relay
    partition = partition_of(cid, h.store.partitions)
    steps: list[str] = []
    claim_and_begin = h.store.claim_and_begin

    async def counted(*args: Any) -> Any:
        steps.append("claim_and_begin")
        return await claim_and_begin(*args)

    h.store.claim_and_begin = counted  # type: ignore[method-assign]
    texts = [f"text {n}" for n in range(5)]
    for text in texts:
        await eventually(lambda: partition in relay._resting, what="the consumer's rest")
        await h.sim.desk.say(cid, text)
        await h.settled()
    assert h.rasa.texts("bob") == ["first", *texts]
    assert len(steps) <= 2


async def test_a_response_lost_after_rasa_accepted_shows_the_text_once(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    cid = await h.escalate("cy")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.settled()
    h.rasa.lose_next_responses = 1
    await h.sim.desk.say(cid, "hello")
    await h.sim.desk.say(cid, "second")
    await h.settled()
    assert h.rasa.texts("cy") == ["hello", "second"]
    assert h.runtime.metrics.relay_skipped._value.get() == 1


async def test_events_before_the_mapping_are_held_then_delivered_in_order(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    created = await h.chat.create_conversation(_customer())
    cid = created.conversation_id
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.sim.desk.say(cid, "are you there?")
    await h.settled()
    assert _seen(h, "dee") == []  # nothing can be delivered yet: no sender known
    await h.link("dee", cid)
    await h.settled()
    assert _seen(h, "dee") == [QUEUED, JOINED, "are you there?"]


async def test_first_event_before_the_202_is_not_lost(make_bridge: BridgeFactory) -> None:
    h = await make_bridge()
    h.sim.config = dataclasses.replace(h.sim.config, early_events=True)
    cid = await h.escalate("eve")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.settled()
    assert _seen(h, "eve")[:2] == [QUEUED, JOINED]


async def test_agent_left_returns_the_user_to_the_bot_and_transfer_does_not(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    cid = await h.escalate("gus")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.sim.desk.transfer(cid, queue_id="202")
    await h.sim.desk.accept(cid, agent_name="Bo")
    await h.sim.desk.say(cid, "Bo here")
    await h.sim.desk.leave(cid)
    await h.settled()
    seen = _seen(h, "gus")
    assert seen.count(LEFT) == 1 and seen[-1] == LEFT
    assert seen.count(JOINED) == 2 and "Bo here" in seen
    record = await h.store.load_handoff(SenderId("gus"))
    assert record is not None and record.fields["state"] == "ended"


def _customer():  # type: ignore[no-untyped-def]
    from bridge.eightbyeight.client import Customer

    return Customer(name="Ada")


async def test_several_bot_messages_in_one_call_arrive_each_in_order_each_findable(
    rasa: tuple[RasaStandIn, str],
) -> None:
    """The client's multi-event push, over HTTP: one `tracker/events` call, every event seen
    on its own, in order, each with its own marker."""
    stand_in, url = rasa
    client = RasaClient(url)
    try:
        sender = SenderId("ada")
        messages = [BotMessage("one", "e1:0"), BotMessage("two", "e2:0", "Anna"),
                    BotMessage(None, "e2:0.1", "Anna", {"image": "https://x/y.png"})]  # fmt: skip
        await client.push_bot_messages(sender, messages)
        assert stand_in.posts == [("ada", 3)]
        assert [(p.text, p.marker) for p in stand_in.pushes] == [
            ("one", "e1:0"), ("two", "e2:0"), (None, "e2:0.1"),
        ]  # fmt: skip
        assert stand_in.pushes[2].entities == {"image": "https://x/y.png"}
        for marker in ("e1:0", "e2:0", "e2:0.1"):
            assert await client.has_marker(sender, marker)
        assert not await client.has_marker(sender, "e3:0")
    finally:
        await client.close()


@pytest.mark.parametrize("sender", ["whatsapp:+49 170/123?x=1&y=%2F#z", "ünï cødé"])
async def test_a_push_reaches_the_senders_tracker_with_the_token_and_its_query(
    sender: str,
) -> None:
    """The push's URL is built once per sender (its query encoded once per client): a sender id
    with characters a URL must escape, and a token that needs escaping too, arrive as given."""
    stand_in = RasaStandIn(token="s3cret&=+/ token")
    queries: list[dict[str, str]] = []

    @web.middleware
    async def note_query(request: web.Request, handler: Any) -> web.StreamResponse:
        queries.append(dict(request.query))
        return await handler(request)

    app = stand_in.app()
    app.middlewares.append(note_query)
    server = await serve_app(app)
    client = RasaClient(
        str(server.make_url("")).rstrip("/"), token=SecretStr("s3cret&=+/ token"),
        output_channel="socketio",
    )  # fmt: skip
    try:
        for text in ("one", "two"):
            await client.push_bot_message(SenderId(sender), text, marker=f"{text}:0")
        assert stand_in.texts(sender) == ["one", "two"]
        assert queries[-1] == {
            "output_channel": "socketio", "execute_side_effects": "true",
            "include_events": "NONE", "token": "s3cret&=+/ token",
        }  # fmt: skip
    finally:
        await client.close()
        await server.close()


async def test_agent_messages_sent_while_rasa_is_stalled_go_in_one_push_once_in_order(
    make_bridge: BridgeFactory,
) -> None:
    """Rasa stalls on a push: the agent's next messages wait in the stream, then go in one
    `tracker/events` call, each shown once, in order."""
    h = await make_bridge()
    cid = await h.escalate("ada")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.settled()
    h.rasa.gate = asyncio.Event()
    calls = h.rasa.requests
    await h.sim.desk.say(cid, "first")
    await eventually(lambda: h.rasa.requests > calls, what="the first push, stalled")
    for k in range(4):
        await h.sim.desk.say(cid, f"next-{k}")
    await h.sim.idle()  # all four accepted: in the stream behind the stalled push
    h.rasa.gate.set()
    await h.settled()
    assert h.rasa.texts("ada") == ["first", "next-0", "next-1", "next-2", "next-3"]
    assert [n for sender, n in h.rasa.posts if sender == "ada"] == [1, 4]


async def test_a_push_rasa_holds_does_not_hold_up_another_conversation_read_with_it(
    make_bridge: BridgeFactory,
) -> None:
    """One partition: zed's held push keeps the consumer in its round while ada's and bob's
    messages are accepted, so the next round reads them together; Rasa then holds ada's push,
    and bob's is delivered meanwhile."""
    h = await make_bridge(relay_partitions=1)
    cids = {sender: await h.escalate(sender) for sender in ("zed", "ada", "bob")}
    for cid in cids.values():
        await h.sim.desk.accept(cid, agent_name="Anna")
    await h.settled()
    zed, ada = h.rasa.hold("zed"), h.rasa.hold("ada")
    await h.sim.desk.say(cids["zed"], "plug")
    async with asyncio.timeout(10):
        await zed.arrived.wait()
    await h.sim.desk.say(cids["ada"], "a1")
    await h.sim.idle()  # accepted: in the stream, behind zed's round, ahead of bob's
    await h.sim.desk.say(cids["bob"], "b1")
    await h.sim.idle()
    zed.released.set()
    async with asyncio.timeout(10):
        await ada.arrived.wait()
    await eventually(lambda: h.rasa.texts("bob") == ["b1"], what="bob's message, ada's held")
    assert h.rasa.texts("ada") == []
    ada.released.set()
    await h.settled()
    assert h.rasa.texts("ada") == ["a1"]
    assert h.rasa.texts("zed") == ["plug"]
