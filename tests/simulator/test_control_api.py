"""The desk control API under /_sim/ and the change notices behind its event stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from bridge.simulator import Simulator
from tests.simulator.conftest import GW, GW_HEADERS, Answer, Receiver, call, gw_create, settle


async def sim_call(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, body: Any = None
) -> Answer:
    return await call(http, method, f"{sim.base_url}/_sim{path}", json_body=body)


async def test_conversations_show_everything_the_desk_needs(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    cid = await gw_create(
        http,
        sim,
        user={"name": "Jo", "email": "jo@example.com"},
        history={"messages": [{"authorType": "bot", "text": "How can I help?"}]},
    )
    await call(
        http,
        "POST",
        f"{sim.base_url}{GW}/conversations/{cid}/messages",
        headers=GW_HEADERS,
        json_body={"authorType": "user", "text": "a human please"},
    )
    answer = await sim_call(http, sim, "GET", "/conversations")
    assert (answer.status, answer.content_type) == (200, "application/json")
    [view] = answer.json["conversations"]
    assert (view["id"], view["state"], view["agent"], view["queueId"]) == (
        cid,
        "active",
        None,
        "101",
    )
    assert view["customer"] == {"name": "Jo", "email": "jo@example.com"}
    assert [m["text"] for m in view["history"]] == ["How can I help?"]
    assert [(m["authorType"], m["text"]) for m in view["messages"]] == [("user", "a human please")]
    one = await sim_call(http, sim, "GET", f"/conversations/{cid}")
    assert one.json == view
    assert sim.requests[-1].path.endswith("/messages")  # /_sim/ calls are not recorded


async def test_desk_actions_over_http(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    cid = await gw_create(http, sim)
    accepted = await sim_call(
        http, sim, "POST", f"/conversations/{cid}/accept", {"agentName": "Eve"}
    )
    assert accepted.status == 200 and accepted.json["agent"]["name"] == "Eve"
    assert (
        await sim_call(http, sim, "POST", f"/conversations/{cid}/typing", {"on": True})
    ).status == 200
    said = await sim_call(http, sim, "POST", f"/conversations/{cid}/say", {"text": "Hi, Eve here"})
    assert said.json["messages"][-1]["text"] == "Hi, Eve here"
    moved = await sim_call(http, sim, "POST", f"/conversations/{cid}/transfer", {"queueId": "9"})
    assert (moved.json["queueId"], moved.json["agent"]) == ("9", None)
    await sim_call(http, sim, "POST", f"/conversations/{cid}/accept", {})
    left = await sim_call(http, sim, "POST", f"/conversations/{cid}/leave")
    assert (left.status, left.json["state"]) == (200, "idle")
    await settle(sim)
    assert receiver.types(cid)[3:] == [
        "MEMBERS_CHANGED",
        "CONVERSATION_UPDATE",
        "ACTIVITY",
        "MESSAGE",
        "TRANSFER",
        "MEMBERS_CHANGED",
        "QUEUED",
        "MEMBERS_CHANGED",
        "CONVERSATION_UPDATE",
        "MEMBERS_CHANGED",
        "CONVERSATION_UPDATE",
    ]


@pytest.mark.parametrize(
    ("action", "body", "status"),
    [
        ("say", {"text": "too early"}, 409),  # nobody accepted yet
        ("leave", None, 409),
        ("say", {}, 400),
        ("say", {"text": 5}, 400),
        ("say", "not an object", 400),
        ("typing", {"on": "yes"}, 400),
        ("transfer", {}, 400),
        ("accept", {"agentName": ""}, 400),
        ("accept", {"agentName": 3}, 400),
    ],
)
async def test_bad_desk_input(
    http: aiohttp.ClientSession, sim: Simulator, action: str, body: Any, status: int
) -> None:
    cid = await gw_create(http, sim)
    answer = await sim_call(http, sim, "POST", f"/conversations/{cid}/{action}", body)
    assert (answer.status, answer.content_type) == (status, "application/json")
    assert isinstance(answer.json["error"], str) and answer.json["error"]


async def test_unknown_conversation_and_conflicts(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    missing = await sim_call(http, sim, "POST", "/conversations/nope/accept", {})
    assert (missing.status, missing.json) == (404, {"error": "no such conversation"})
    assert (await sim_call(http, sim, "GET", "/conversations/nope")).status == 404
    cid = await gw_create(http, sim)
    assert (await sim_call(http, sim, "POST", f"/conversations/{cid}/accept", {})).status == 200
    twice = await sim_call(http, sim, "POST", f"/conversations/{cid}/accept", {})
    assert twice.status == 409 and "already" in twice.json["error"]
    raw = await call(http, "POST", f"{sim.base_url}/_sim/conversations/{cid}/say")
    assert raw.status == 400  # no body at all: text is missing
    async with http.post(f"{sim.base_url}/_sim/conversations/{cid}/say", data=b"{nope") as resp:
        assert resp.status == 400
    assert (await sim_call(http, sim, "GET", "/nothing")).json == {"error": "Not Found"}


async def test_faults_over_http(http: aiohttp.ClientSession, sim: Simulator) -> None:
    added = await sim_call(
        http,
        sim,
        "POST",
        "/faults",
        {"route": "list_conversations", "count": 1, "status": 502, "retryAfter": 3},
    )
    assert (added.status, added.json) == (200, {"pending": {"list_conversations": 1}})
    failing = await call(http, "GET", sim.base_url + GW + "/conversations", headers=GW_HEADERS)
    assert (failing.status, failing.headers["Retry-After"]) == (502, "3")
    for bad in (
        {"route": "nope"},
        {"status": 503},
        {"route": "token", "count": "2"},
        {"route": "token", "status": 200},
        {"route": "token", "retryAfter": True},
        {"route": "token", "timeout": "yes"},
    ):
        answer = await sim_call(http, sim, "POST", "/faults", bad)
        assert answer.status == 400, bad
    await sim_call(http, sim, "POST", "/faults", {"route": "token", "count": 3})
    assert (await sim_call(http, sim, "GET", "/faults")).json == {"pending": {"token": 3}}
    assert (await sim_call(http, sim, "DELETE", "/faults")).json == {"pending": {}}


async def test_deliveries_requests_info_and_settings(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    cid = await gw_create(http, sim)
    await settle(sim)
    deliveries = (await sim_call(http, sim, "GET", "/deliveries")).json["deliveries"]
    assert [d["eventType"] for d in deliveries] == [
        "CONVERSATION_UPDATE",
        "CONVERSATION_UPDATE",
        "QUEUED",
    ]
    first = deliveries[0]
    assert (first["conversationId"], first["status"], first["ok"], first["retry"]) == (
        cid,
        200,
        True,
        0,
    )
    assert json.loads(first["body"])["eventType"] == "CONVERSATION_UPDATE"
    assert first["headers"]["x-8x8-event-id"] == first["eventId"]

    requests = (await sim_call(http, sim, "GET", "/requests")).json
    assert requests == {
        "requests": [{"method": "POST", "path": f"{GW}/conversations", "status": 202}],
        "tokenRequests": 0,
    }
    info = (await sim_call(http, sim, "GET", "/info")).json
    assert (info["baseUrl"], info["kid"], info["channelId"]) == (sim.base_url, sim.kid, "ch1")
    assert "k" not in info.values()  # no credentials

    old_kid = sim.kid
    rotated = await sim_call(http, sim, "POST", "/rotate-key")
    assert rotated.json["kid"] == sim.kid != old_kid
    moved = await sim_call(http, sim, "POST", "/webhook-url", {"url": receiver.base + "/x"})
    assert moved.status == 200 and sim.webhook_url == receiver.base + "/x"
    assert (await sim_call(http, sim, "POST", "/webhook-url", {"url": "ftp://x"})).status == 400


async def test_event_stream(http: aiohttp.ClientSession, sim: Simulator) -> None:
    cid = await gw_create(http, sim)
    async with http.get(f"{sim.base_url}/_sim/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert await stream.content.readline() == b": connected\n"
        assert await stream.content.readline() == b"\n"
        await sim.desk.accept(cid, agent_name="Anna")

        async def next_event() -> tuple[str, dict[str, Any]]:
            lines: list[bytes] = []
            while (line := await stream.content.readline()) != b"\n":
                lines.append(line)
            name = lines[0].decode().removeprefix("event: ").strip()
            return name, json.loads(lines[1].decode().removeprefix("data: "))

        async with asyncio.timeout(3):
            name, notice = await next_event()
            while name != "conversation":  # deliveries of earlier events may come first
                name, notice = await next_event()
    assert notice["conversation"]["agent"]["name"] == "Anna"


async def test_subscribe_gets_conversation_message_and_delivery_notices(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    subscription = sim.subscribe()
    cid = await gw_create(http, sim)
    await sim.desk.accept(cid)
    await sim.desk.say(cid, "hi")
    await settle(sim)
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(2):
        async for notice in subscription:
            seen.append(notice)
            if notice["type"] == "delivery" and notice["delivery"]["eventType"] == "MESSAGE":
                break
    types = {n["type"] for n in seen}
    assert types == {"conversation", "message", "delivery"}
    assert [n["message"]["text"] for n in seen if n["type"] == "message"] == ["hi"]
    subscription.close()
