"""Chat API v2 routes and its OAuth token (spec §1.1, §2)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from bridge.simulator import Simulator
from tests.simulator.conftest import (
    Answer,
    MakeSim,
    bearer,
    call,
    fetch_token,
    gw_create,
    v2,
    v2_create,
)

FAULT_401 = {
    "fault": {
        "faultstring": "Invalid Access Token",
        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
    }
}


async def token_call(
    http: aiohttp.ClientSession,
    sim: Simulator,
    *,
    auth: str | None,
    grant: str = "client_credentials",
) -> Answer:
    headers = {"Authorization": auth} if auth is not None else {}
    return await call(
        http, "POST", sim.base_url + "/oauth/v2/token", headers=headers, data={"grant_type": grant}
    )


async def test_token_answers_strings_only(http: aiohttp.ClientSession, v2_sim: Simulator) -> None:
    answer = await token_call(http, v2_sim, auth=aiohttp.encode_basic_auth("k", "s"))
    assert (answer.status, answer.content_type) == (200, "application/json")
    body = answer.json
    assert body["token_type"] == "BearerToken" and body["expires_in"] == "1799"
    assert body["issued_at"].isdigit() and body["status"] == "approved"
    scalars = {k: v for k, v in body.items() if not isinstance(v, list)}
    assert all(isinstance(v, str) for v in scalars.values()), scalars
    assert v2_sim.token_requests == 1


@pytest.mark.parametrize(
    "auth",
    [
        None,
        aiohttp.encode_basic_auth("k", "wrong"),
        aiohttp.encode_basic_auth("x", "s"),
        "Basic !!",
    ],
)
async def test_token_refuses_wrong_credentials(
    http: aiohttp.ClientSession, v2_sim: Simulator, auth: str | None
) -> None:
    answer = await token_call(http, v2_sim, auth=auth)
    assert (answer.status, answer.content_type) == (401, "application/problem+json")
    assert answer.json == {"ErrorCode": "invalid_client", "Error": "ClientId is Invalid"}


async def test_token_refuses_other_grants(http: aiohttp.ClientSession, v2_sim: Simulator) -> None:
    answer = await token_call(
        http, v2_sim, auth=aiohttp.encode_basic_auth("k", "s"), grant="password"
    )
    assert answer.status == 400
    assert answer.json == {
        "ErrorCode": "invalid_request",
        "Error": "Unsupported grant type : password",
    }
    assert v2_sim.token_requests == 1


async def test_bearer_is_required_and_checked(
    http: aiohttp.ClientSession, v2_sim: Simulator
) -> None:
    url = v2_sim.base_url + v2("/conversations")
    for headers in ({}, {"Authorization": "Bearer made-up"}, {"x-api-key": "k"}):
        answer = await call(http, "GET", url, headers=headers)
        assert answer.status == 401 and answer.json == FAULT_401


async def test_tokens_really_expire(http: aiohttp.ClientSession, make_sim: MakeSim) -> None:
    sim = await make_sim(api="chat-v2", token_ttl_s=0.3)
    answer = await token_call(http, sim, auth=aiohttp.encode_basic_auth("k", "s"))
    assert answer.json["expires_in"] == "1"  # whole seconds, rounded up
    headers = {"Authorization": f"Bearer {answer.json['access_token']}"}
    url = sim.base_url + v2("/conversations")
    assert (await call(http, "GET", url, headers=headers)).status == 200
    await asyncio.sleep(0.35)
    expired = await call(http, "GET", url, headers=headers)
    assert expired.status == 401 and expired.json == FAULT_401
    assert (await call(http, "GET", url, headers=await bearer(http, sim))).status == 200


async def test_tenant_and_region_are_checked(
    http: aiohttp.ClientSession, v2_sim: Simulator
) -> None:
    headers = await bearer(http, v2_sim)
    other = await call(
        http, "GET", v2_sim.base_url + v2("/conversations", tenant="t2"), headers=headers
    )
    assert other.status == 403
    assert other.json == {
        "message": "The tenant does not belong to customer.",
        "errors": ["Tenant t2 does not belong to customer c1."],
    }
    for region in ("eu", "ca", "ap"):
        url = v2_sim.base_url + v2("/conversations", region=region)
        assert (await call(http, "GET", url, headers=headers)).status == 200
    nowhere = await call(
        http, "GET", v2_sim.base_url + v2("/conversations", region="mars"), headers=headers
    )
    assert nowhere.status == 404


async def test_create_get_and_list(http: aiohttp.ClientSession, v2_sim: Simulator) -> None:
    headers = await bearer(http, v2_sim)
    created = await call(
        http,
        "POST",
        v2_sim.base_url + v2("/conversations"),
        headers=headers,
        json_body={
            "channelId": "ch1",
            "customer": {"name": "John Doe", "email": "j@example.com", "cognigyUserId": "c-1"},
            "history": {"messages": [{"type": "bot", "text": "Hi"}, {"text": "help"}]},
        },
    )
    assert (created.status, created.content_type) == (202, "application/json")
    assert set(created.json) == {"conversationId", "timestamp"}
    assert isinstance(created.json["timestamp"], int)
    cid = created.json["conversationId"]

    got = await call(http, "GET", v2_sim.base_url + v2(f"/conversations/{cid}"), headers=headers)
    assert got.status == 200
    assert got.json["customer"] == {
        "name": "John Doe",
        "email": "j@example.com",
        "cognigyUserId": "c-1",
    }
    assert (got.json["id"], got.json["channelId"]) == (cid, "ch1")
    assert got.json["startTime"].endswith("Z") and len(got.json["interactions"]) == 1

    other = await v2_create(http, v2_sim, headers, customer={"email": "other@example.com"})
    await v2_sim.desk.accept(other)
    base = v2_sim.base_url + v2("/conversations")

    async def ids(query: str) -> list[str]:
        answer = await call(http, "GET", base + query, headers=headers)
        assert answer.status == 200
        return [c["id"] for c in answer.json["data"]]

    listed = await call(http, "GET", base, headers=headers)
    assert listed.json["page"] == {
        "pageSize": 20,
        "pageIndex": 0,
        "elementCount": 2,
        "pageCount": 1,
    }
    assert await ids("") == [cid, other]
    assert await ids("?order=desc") == [other, cid]
    assert await ids("?status=pending") == [cid]
    assert await ids("?status=handling") == [other]
    assert await ids("?customer.email=j@example.com") == [cid]
    assert await ids("?channel-id=elsewhere") == []
    assert await ids("?size=1&page=1") == [other]


async def test_create_accepts_user_as_a_synonym(
    http: aiohttp.ClientSession, v2_sim: Simulator
) -> None:
    headers = await bearer(http, v2_sim)
    answer = await call(
        http,
        "POST",
        v2_sim.base_url + v2("/conversations"),
        headers=headers,
        json_body={"channelId": "ch1", "user": {"name": "Jo"}},
    )
    assert answer.status == 202
    assert v2_sim.conversations[answer.json["conversationId"]].customer == {"name": "Jo"}


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"customer": {}}, "channelId: May not be empty."),
        ({"channelId": "nope"}, "channelId: Channel nope does not exist."),
        ({"channelId": "ch1", "customer": {"age": 3}}, "customer.age: Must be a string."),
        ({"channelId": "ch1", "customer": {f"k{i}": "v" for i in range(31)}}, "at most 30"),
        ({"channelId": "ch1", "history": {"messages": [{"type": "agent", "text": "x"}]}}, "type"),
    ],
)
async def test_create_validation_is_a_constraint_violation(
    http: aiohttp.ClientSession, v2_sim: Simulator, body: dict[str, Any], complaint: str
) -> None:
    headers = await bearer(http, v2_sim)
    answer = await call(
        http, "POST", v2_sim.base_url + v2("/conversations"), headers=headers, json_body=body
    )
    assert (answer.status, answer.content_type) == (400, "application/problem+json")
    assert answer.json["message"] == "Constraint Violation"
    assert complaint in answer.json["errors"][0]


async def test_messages_participants_and_leave(
    http: aiohttp.ClientSession, v2_sim: Simulator
) -> None:
    headers = await bearer(http, v2_sim)
    cid = await v2_create(
        http, v2_sim, headers, history={"messages": [{"type": "bot", "text": "Hi"}]}
    )
    one = v2_sim.base_url + v2(f"/conversations/{cid}")
    sent = await call(http, "POST", one + "/messages", headers=headers, json_body={"text": "help"})
    assert (sent.status, sent.text) == (202, "")
    await v2_sim.desk.accept(cid, agent_id="a1")
    await v2_sim.desk.say(cid, "on it")

    messages = await call(http, "GET", one + "/messages", headers=headers)
    assert messages.status == 200
    first_interaction = v2_sim.conversations[cid].interactions[0].id
    assert messages.json == {
        "messages": [
            {
                "interactionId": first_interaction,
                "originalText": "Hi",
                "translatedText": "Hi",
                "authorType": "bot",
                "participantId": "Bot",
            },
            {
                "interactionId": first_interaction,
                "originalText": "help",
                "translatedText": "help",
                "authorType": "user",
                "participantId": "Customer",
            },
            {
                "interactionId": first_interaction,
                "originalText": "on it",
                "translatedText": "on it",
                "authorType": "agent",
                "participantId": "a1",
            },
        ]
    }
    people = await call(http, "GET", one + "/participants", headers=headers)
    assert people.json == {
        "participants": [
            {"id": "Customer", "type": "user", "language": "en"},
            {"id": "Bot", "type": "bot", "language": "en"},
            {"id": "a1", "type": "agent", "language": "en"},
        ]
    }
    left = await call(http, "DELETE", one + "/participants/customer", headers=headers)
    assert (left.status, left.text) == (204, "")
    await call(http, "POST", one + "/messages", headers=headers, json_body={"text": "back"})
    second = v2_sim.conversations[cid].interactions[1].id
    filtered = await call(http, "GET", f"{one}/messages?interaction-id={second}", headers=headers)
    assert [m["originalText"] for m in filtered.json["messages"]] == ["back"]


async def test_send_message_errors(http: aiohttp.ClientSession, v2_sim: Simulator) -> None:
    headers = await bearer(http, v2_sim)
    cid = await v2_create(http, v2_sim, headers)
    url = v2_sim.base_url + v2(f"/conversations/{cid}/messages")
    for body in ({}, {"text": ""}, {"text": 5}, {"text": "x", "authorType": "agent"}):
        answer = await call(http, "POST", url, headers=headers, json_body=body)
        assert answer.status == 400 and answer.json["message"] == "Constraint Violation", body
    missing = await call(
        http,
        "POST",
        v2_sim.base_url + v2("/conversations/nope/messages"),
        headers=headers,
        json_body={"text": "x"},
    )
    message = "Resource of type Conversation with id nope was not found."
    assert (missing.status, missing.json) == (404, {"message": message, "errors": [message]})


async def test_a_gateway_conversation_reads_as_a_v2_one(
    http: aiohttp.ClientSession, v2_sim: Simulator
) -> None:
    cid = await gw_create(
        http,
        v2_sim,
        user={
            "name": "Jo",
            "userId": "u1",
            "additionalProperties": [{"key": "plan", "value": "gold"}],
        },
    )
    headers = {"Authorization": f"Bearer {await fetch_token(http, v2_sim)}"}
    got = await call(http, "GET", v2_sim.base_url + v2(f"/conversations/{cid}"), headers=headers)
    assert got.json["customer"] == {"name": "Jo", "customerId": "u1", "plan": "gold"}
