"""The lifecycle's webhook events, in order, for both families, and what the bridge's own
parser makes of each (spec §5; the orders are the ones documented in simulator/events.py)."""

from __future__ import annotations

import aiohttp

from bridge.eightbyeight.events import EventKind
from bridge.simulator import Simulator
from tests.simulator.conftest import (
    GW,
    GW_HEADERS,
    MakeSim,
    Receiver,
    bearer,
    call,
    gw_create,
    settle,
    v2,
    v2_create,
)

K = EventKind


def kinds(receiver: Receiver, cid: str) -> list[tuple[str, EventKind]]:
    return [
        (r.event_type, r.event.kind)
        for r in receiver.events()
        if r.json.get("conversationId") == cid
    ]


async def gw_send(http: aiohttp.ClientSession, sim: Simulator, cid: str, text: str) -> None:
    answer = await call(
        http,
        "POST",
        f"{sim.base_url}{GW}/conversations/{cid}/messages",
        headers=GW_HEADERS,
        json_body={"authorType": "user", "text": text},
    )
    assert answer.status == 202, answer.text


async def gw_leave(http: aiohttp.ClientSession, sim: Simulator, cid: str) -> None:
    answer = await call(
        http,
        "PATCH",
        f"{sim.base_url}{GW}/conversations/{cid}/participants/user",
        headers=GW_HEADERS,
        json_body={"removed": True},
    )
    assert answer.status == 204, answer.text


# --- Chat Gateway ---


async def test_gateway_full_conversation(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    cid = await gw_create(http, sim)
    await gw_send(http, sim, cid, "hello?")
    await sim.desk.accept(cid, agent_name="Anna", agent_id="agent-1")
    await sim.desk.typing(cid, True)
    await sim.desk.say(cid, "Hello, I'm Anna")
    await sim.desk.typing(cid, False)
    await sim.desk.leave(cid)
    await settle(sim)
    assert kinds(receiver, cid) == [
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
        ("QUEUED", K.QUEUED),
        ("MESSAGE", K.ECHO),
        ("MEMBERS_CHANGED", K.AGENT_JOINED),
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
        ("ACTIVITY", K.TYPING),
        ("MESSAGE", K.AGENT_MESSAGE),
        ("ACTIVITY", K.TYPING),
        ("MEMBERS_CHANGED", K.AGENT_LEFT),
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
    ]
    events = [r.event for r in receiver.events()]
    assert [e.state for e in events if e.kind == K.CONVERSATION_STATE] == [
        "created",
        "active",
        "active",
        "idle",
    ]
    assert events[2].queue_id == "101" and events[2].queue_name == "Customer Support"
    assert events[4].agent_id == "agent-1"
    assert [e.typing for e in events if e.kind == K.TYPING] == [True, False]
    message = events[7]
    assert (message.text, message.agent_id) == ("Hello, I'm Anna", "agent-1")
    assert all(e.conversation_id == cid and e.timestamp_ms for e in events)
    # Accepting moves the assignment to the agent (spec §5.2.3).
    assert receiver.events()[5].json["data"]["assignment"] == {"type": "agent", "id": "agent-1"}


async def test_gateway_user_leave_with_and_without_agent(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    held = await gw_create(http, sim)
    waiting = await gw_create(http, sim)
    await sim.desk.accept(held)
    await settle(sim)
    before_held, before_waiting = len(kinds(receiver, held)), len(kinds(receiver, waiting))
    await gw_leave(http, sim, held)
    await gw_leave(http, sim, waiting)
    await settle(sim)
    assert kinds(receiver, held)[before_held:] == [
        ("MEMBERS_CHANGED", K.USER_LEFT),
        ("MEMBERS_CHANGED", K.AGENT_LEFT),
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
    ]
    assert kinds(receiver, waiting)[before_waiting:] == [
        ("MEMBERS_CHANGED", K.USER_LEFT),
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
    ]
    assert sim.conversations[held].state == "idle"
    assert sim.conversations[held].interaction is None


async def test_gateway_transfer_then_another_agent(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    cid = await gw_create(http, sim)
    await sim.desk.accept(cid, agent_name="Anna")
    await settle(sim)
    before = len(kinds(receiver, cid))
    await sim.desk.transfer(cid, queue_id="202")
    await sim.desk.accept(cid, agent_name="Bob", agent_id="bob")
    await settle(sim)
    assert kinds(receiver, cid)[before:] == [
        ("TRANSFER", K.TRANSFER),
        ("MEMBERS_CHANGED", K.AGENT_LEFT),
        ("QUEUED", K.QUEUED),
        ("MEMBERS_CHANGED", K.AGENT_JOINED),
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
    ]
    assert receiver.events()[before + 2].event.queue_id == "202"
    conv = sim.conversations[cid]
    assert (conv.queue_id, conv.agent and conv.agent.id, len(conv.interactions)) == (
        "202",
        "bob",
        1,
    )


async def test_gateway_reopen_after_leave_creates_a_new_interaction_in_the_last_queue(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    cid = await gw_create(http, sim)
    await sim.desk.accept(cid)
    await sim.desk.transfer(cid, queue_id="303")
    await sim.desk.accept(cid)
    await sim.desk.leave(cid)
    await settle(sim)
    before = len(kinds(receiver, cid))
    await gw_send(http, sim, cid, "me again")
    await settle(sim)
    assert kinds(receiver, cid)[before:] == [
        ("CONVERSATION_UPDATE", K.CONVERSATION_STATE),
        ("QUEUED", K.QUEUED),
        ("MESSAGE", K.ECHO),
    ]
    reopened = receiver.events()[before:]
    assert reopened[0].event.state == "active"
    assert reopened[1].event.queue_id == "303"
    conv = sim.conversations[cid]
    assert len(conv.interactions) == 2 and conv.interactions[0].end_ms is not None
    assert conv.messages[-1].interaction_id == conv.interactions[1].id
    assert conv.state == "active"


async def test_gateway_echo_carries_the_sender(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    cid = await gw_create(http, sim, user={"name": "Jo", "userId": "u-7"})
    await call(
        http,
        "POST",
        f"{sim.base_url}{GW}/conversations/{cid}/messages",
        headers=GW_HEADERS,
        json_body={"authorType": "bot", "text": "transcript note"},
    )
    await gw_send(http, sim, cid, "from the user")
    await settle(sim)
    data = [r.json["data"] for r in receiver.events() if r.event_type == "MESSAGE"]
    assert [(d["isEcho"], d["sender"]["type"], d["text"]) for d in data] == [
        (True, "bot", "transcript note"),
        (True, "user", "from the user"),
    ]
    assert data[1]["sender"]["id"] == "u-7"


# --- Chat API v2 ---


async def test_v2_full_conversation(
    http: aiohttp.ClientSession, v2_sim: Simulator, receiver: Receiver
) -> None:
    sim = v2_sim
    headers = await bearer(http, sim)
    cid = await v2_create(http, sim, headers)
    sent = await call(
        http,
        "POST",
        sim.base_url + v2(f"/conversations/{cid}/messages"),
        headers=headers,
        json_body={"authorType": "user", "text": "hello?"},
    )
    assert sent.status == 202
    await sim.desk.accept(cid, agent_name="Anna", agent_id="anna")
    await sim.desk.typing(cid, True)  # no such event in v2
    await sim.desk.say(cid, "Hello, I'm Anna")
    await sim.desk.leave(cid)
    await settle(sim)
    assert kinds(receiver, cid) == [
        ("QUEUED", K.QUEUED),
        ("AGENT_JOINED", K.AGENT_JOINED),
        ("TEXT", K.AGENT_MESSAGE),
        ("AGENT_LEFT", K.AGENT_LEFT),
    ]
    joined, text = receiver.events()[1], receiver.events()[2]
    assert joined.json == {
        "eventType": "AGENT_JOINED",
        "messageType": "SYSTEM",
        "conversationId": cid,
        "agentId": "anna",
        "agentName": "Anna",
        "timestamp": joined.json["timestamp"],
    }
    assert (text.json["messageType"], text.json["message"]) == ("AGENT", "Hello, I'm Anna")
    assert (text.event.agent_name, text.event.text) == ("Anna", "Hello, I'm Anna")


async def test_v2_customer_leave_reports_agent_left_only_when_an_agent_held_it(
    http: aiohttp.ClientSession, v2_sim: Simulator, receiver: Receiver
) -> None:
    sim = v2_sim
    headers = await bearer(http, sim)
    held = await v2_create(http, sim, headers)
    waiting = await v2_create(http, sim, headers)
    await sim.desk.accept(held, agent_name="Anna")
    for cid in (held, waiting):
        url = sim.base_url + v2(f"/conversations/{cid}/participants/customer")
        assert (await call(http, "DELETE", url, headers=headers)).status == 204
    await settle(sim)
    assert kinds(receiver, held) == [
        ("QUEUED", K.QUEUED),
        ("AGENT_JOINED", K.AGENT_JOINED),
        ("AGENT_LEFT", K.AGENT_LEFT),
    ]
    assert kinds(receiver, waiting) == [("QUEUED", K.QUEUED)]
    assert sim.conversations[waiting].state == "idle"


async def test_v2_transfer_and_reopen(
    http: aiohttp.ClientSession, v2_sim: Simulator, receiver: Receiver
) -> None:
    sim = v2_sim
    headers = await bearer(http, sim)
    cid = await v2_create(http, sim, headers)
    await sim.desk.accept(cid, agent_name="Anna")
    await sim.desk.transfer(cid, queue_id="202")
    await sim.desk.accept(cid, agent_name="Bob")
    await sim.desk.leave(cid)
    url = sim.base_url + v2(f"/conversations/{cid}/messages")
    reopened = await call(http, "POST", url, headers=headers, json_body={"text": "again"})
    assert reopened.status == 202
    await settle(sim)
    assert kinds(receiver, cid) == [
        ("QUEUED", K.QUEUED),
        ("AGENT_JOINED", K.AGENT_JOINED),
        ("TRANSFER", K.TRANSFER),
        ("AGENT_LEFT", K.AGENT_LEFT),
        ("QUEUED", K.QUEUED),
        ("AGENT_JOINED", K.AGENT_JOINED),
        ("AGENT_LEFT", K.AGENT_LEFT),
        ("QUEUED", K.QUEUED),
    ]
    queues = [r.json["queueId"] for r in receiver.events() if r.event_type == "QUEUED"]
    assert queues == ["101", "202", "202"]  # reopened in the last queue
    assert len(sim.conversations[cid].interactions) == 2


async def test_the_event_family_follows_the_config_not_the_creating_api(
    http: aiohttp.ClientSession, make_sim: MakeSim, receiver: Receiver
) -> None:
    sim = await make_sim(api="chat-v2")
    cid = await gw_create(http, sim)  # created through the gateway API
    await sim.desk.accept(cid, agent_name="Anna")
    await settle(sim)
    assert receiver.types(cid) == ["QUEUED", "AGENT_JOINED"]
    assert receiver.events()[0].json["messageType"] == "SYSTEM"
    assert sim.conversations[cid].api == "gateway"
