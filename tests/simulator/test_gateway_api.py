"""Chat Gateway routes: status codes, body shapes, auth and error bodies (spec §1.2, §4)."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest

from bridge.simulator import Simulator
from tests.simulator.conftest import GW, GW_HEADERS, Answer, Receiver, call, gw_create, settle

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
REF = re.compile(r"^[0-9a-f]{15}$")


async def gw(
    http: aiohttp.ClientSession,
    sim: Simulator,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    return await call(
        http,
        method,
        sim.base_url + GW + path,
        headers=GW_HEADERS if headers is None else headers,
        json_body=body,
    )


def assert_not_found(answer: Answer, resource_type: str, resource_id: str) -> None:
    assert answer.status == 404
    assert answer.content_type == "application/problem+json"
    message = f"Resource of type {resource_type} with id {resource_id} was not found."
    assert answer.json == {"message": message, "errors": [message]}


async def test_create_answers_202_with_id_and_time(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    answer = await gw(
        http,
        sim,
        "POST",
        "/conversations",
        {
            "channelId": "ch1",
            "user": {
                "name": "James Jones",
                "email": "user@example.com",
                "language": "en",
                "additionalProperties": [{"key": "Intent", "value": "balance"}],
            },
            "history": {
                "messages": [
                    {"authorType": "user", "text": "Hello, can I get my balance please"},
                    {"authorType": "bot", "text": "Sure, what is your account number"},
                ]
            },
        },
    )
    assert (answer.status, answer.content_type) == (202, "application/hal+json")
    assert set(answer.json) == {"conversationId", "createdAt"}
    assert ISO.match(answer.json["createdAt"])
    conv = sim.conversations[answer.json["conversationId"]]
    assert conv.customer["name"] == "James Jones"
    assert [(m.author_type, m.text) for m in conv.history] == [
        ("user", "Hello, can I get my balance please"),
        ("bot", "Sure, what is your account number"),
    ]
    assert (conv.queue_id, conv.state, conv.api) == ("101", "active", "gateway")


async def test_create_with_an_assignment_queues_there(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    cid = await gw_create(http, sim, assignment={"type": "queue", "id": "555"})
    await settle(sim)
    assert sim.conversations[cid].queue_id == "555"
    assert [r.json["data"]["queueId"] for r in receiver.events() if r.event_type == "QUEUED"] == [
        "555"
    ]


async def test_get_list_interactions_and_participants(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    cid = await gw_create(http, sim, user={"name": "Jo", "userId": "u1", "language": "de"})
    await gw(
        http, sim, "POST", f"/conversations/{cid}/messages", {"authorType": "bot", "text": "hi"}
    )
    await sim.desk.accept(cid, agent_id="a1")

    got = await gw(http, sim, "GET", f"/conversations/{cid}")
    assert (got.status, got.content_type) == (200, "application/hal+json")
    assert got.json == {
        "id": cid,
        "channelId": "ch1",
        "assignment": {"type": "agent", "id": "a1"},
        "user": {"name": "Jo", "userId": "u1", "language": "de"},
        "state": "active",
        "_links": {"self": {"href": f"{GW}/conversations/{cid}"}},
    }

    listed = await gw(http, sim, "GET", "/conversations")
    assert listed.status == 200
    assert [c["id"] for c in listed.json["_embedded"]["conversations"]] == [cid]
    assert listed.json["page"] == {"size": 20, "number": 0, "totalElements": 1, "totalPages": 1}
    assert "self" in listed.json["_links"]

    interactions = await gw(http, sim, "GET", f"/conversations/{cid}/interactions")
    [interaction] = interactions.json["_embedded"]["interactions"]
    assert interaction["id"].startswith("int-") and ISO.match(interaction["startTime"])
    assert "endTime" not in interaction

    people = await gw(http, sim, "GET", f"/conversations/{cid}/participants")
    assert people.status == 200
    assert people.json["_embedded"]["participants"] == [
        {"id": "u1", "removed": False, "type": "user", "language": "de"},
        {"id": "bot", "removed": False, "type": "bot", "language": "de"},
        {"id": "a1", "removed": False, "type": "agent", "language": "de"},
    ]


async def test_list_pages(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ids = [await gw_create(http, sim) for _ in range(3)]
    page = await gw(http, sim, "GET", "/conversations?size=2&page=1")
    assert [c["id"] for c in page.json["_embedded"]["conversations"]] == ids[2:]
    assert page.json["page"] == {"size": 2, "number": 1, "totalElements": 3, "totalPages": 2}
    bad = await gw(http, sim, "GET", "/conversations?size=zero")
    assert bad.status == 400


async def test_messages_send_list_and_get(http: aiohttp.ClientSession, sim: Simulator) -> None:
    cid = await gw_create(
        http, sim, history={"messages": [{"authorType": "bot", "text": "transcript"}]}
    )
    sent = await gw(
        http, sim, "POST", f"/conversations/{cid}/messages", {"authorType": "user", "text": "hi"}
    )
    assert (sent.status, sent.text) == (202, "")
    await sim.desk.accept(cid, agent_id="a1")
    await sim.desk.say(cid, "hello")

    newest_first = await gw(http, sim, "GET", f"/conversations/{cid}/messages")
    assert newest_first.status == 200
    items = newest_first.json["_embedded"]["messages"]
    assert [(m["author"]["type"], m["text"]) for m in items] == [
        ("agent", "hello"),
        ("user", "hi"),
        ("bot", "transcript"),
    ]
    assert items[0]["author"] == {"id": "a1", "removed": False, "type": "agent", "language": "en"}
    assert ISO.match(items[0]["createdAt"]) and "_links" not in newest_first.json

    oldest_first = await gw(http, sim, "GET", f"/conversations/{cid}/messages?sort=createdAt:asc")
    assert [m["text"] for m in oldest_first.json["_embedded"]["messages"]] == [
        "transcript",
        "hi",
        "hello",
    ]
    one = await gw(http, sim, "GET", f"/conversations/{cid}/messages/{items[1]['id']}")
    assert (one.status, one.json["text"]) == (200, "hi")
    missing = await gw(http, sim, "GET", f"/conversations/{cid}/messages/nope")
    assert_not_found(missing, "Message", "nope")
    assert [(m.author_type, m.text) for m in sim.conversations[cid].messages] == [
        ("user", "hi"),
        ("agent", "hello"),
    ]


async def test_typing_and_user_leave(http: aiohttp.ClientSession, sim: Simulator) -> None:
    cid = await gw_create(http, sim)
    typing = await gw(http, sim, "POST", f"/conversations/{cid}/typing", {"authorType": "user"})
    assert (typing.status, typing.text) == (204, "")
    left = await gw(
        http, sim, "PATCH", f"/conversations/{cid}/participants/user", {"removed": True}
    )
    assert (left.status, left.text) == (204, "")
    assert sim.conversations[cid].state == "idle"
    people = await gw(http, sim, "GET", f"/conversations/{cid}/participants")
    assert people.json["_embedded"]["participants"][0]["removed"] is True
    again = await gw(
        http, sim, "PATCH", f"/conversations/{cid}/participants/user", {"removed": True}
    )
    assert again.status == 204  # leaving an idle conversation changes nothing


async def test_bad_author_type_is_a_bad_request_problem(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    cid = await gw_create(http, sim)
    answer = await gw(
        http, sim, "POST", f"/conversations/{cid}/messages", {"authorType": "ghfgh", "text": "x"}
    )
    assert (answer.status, answer.content_type) == (400, "application/problem+json")
    text = "Invalid authorType=ghfgh, has to be one of user, bot, agent"
    assert answer.json["message"] == text
    assert answer.json["errors"] == {"code": "invalid_json_object", "message": text}
    assert REF.match(answer.json["referenceId"])
    for body in ({"authorType": "agent", "text": "x"}, {"text": "x"}, {"authorType": "user"}):
        refused = await gw(http, sim, "POST", f"/conversations/{cid}/messages", body)
        assert refused.status == 400 and isinstance(refused.json["errors"], dict)
    assert sim.conversations[cid].messages == []


async def test_typing_errors_use_their_own_shapes(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    cid = await gw_create(http, sim)
    bad = await gw(http, sim, "POST", f"/conversations/{cid}/typing", {"authorType": "agent"})
    assert bad.status == 400
    assert bad.json["message"].startswith(
        f"Invalid parameter exception for conversation {cid} and tenant t1"
    )
    assert bad.json["errors"][0]["code"] == "invalid_parameter" and REF.match(
        bad.json["referenceId"]
    )
    missing = await gw(http, sim, "POST", "/conversations/nope/typing", {"authorType": "user"})
    assert missing.status == 404
    assert missing.json == {
        "message": "Resource not found",
        "errors": [
            {
                "code": "resource_not_found",
                "message": "Entity of type Conversation with id nope was not found.",
            }
        ],
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/conversations/nope", None),
        ("GET", "/conversations/nope/messages", None),
        ("POST", "/conversations/nope/messages", {"authorType": "user", "text": "x"}),
        ("GET", "/conversations/nope/participants", None),
        ("PATCH", "/conversations/nope/participants/user", {"removed": True}),
        ("GET", "/conversations/nope/interactions", None),
    ],
)
async def test_unknown_conversation_is_the_documented_404(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, body: Any
) -> None:
    assert_not_found(await gw(http, sim, method, path, body), "Conversation", "nope")


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"user": {"name": "Jo"}}, "channelId: May not be empty."),
        ({"channelId": "ch1"}, "user: May not be null."),
        ({"channelId": "nope", "user": {}}, "channelId: Channel nope does not exist."),
        ({"channelId": "ch1", "user": {"language": "English"}}, "user.language"),
        ({"channelId": "ch1", "user": {"name": ["x"]}}, "user.name: Must be a string."),
        ({"channelId": "ch1", "user": {"additionalProperties": [{"key": "k"}]}}, "key and value"),
        ({"channelId": "ch1", "user": {}, "assignment": {"type": "script", "id": "1"}}, "type"),
        ({"channelId": "ch1", "user": {}, "history": {"messages": "no"}}, "history.messages"),
        (
            {"channelId": "ch1", "user": {}, "history": {"messages": [{"text": "x"}] * 201}},
            "at most 200",
        ),
    ],
)
async def test_create_validation_is_a_generic_400(
    http: aiohttp.ClientSession, sim: Simulator, body: dict[str, Any], complaint: str
) -> None:
    answer = await gw(http, sim, "POST", "/conversations", body)
    assert (answer.status, answer.content_type) == (400, "application/problem+json")
    assert complaint in answer.json["message"]
    assert answer.json["errors"][0]["message"] == answer.json["message"]
    assert sim.conversations == {}


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'"text"', b"\xff\xfe", b""])
async def test_malformed_bodies_are_400_never_500(
    http: aiohttp.ClientSession, sim: Simulator, raw: bytes
) -> None:
    cid = await gw_create(http, sim)
    for path in ("/conversations", f"/conversations/{cid}/messages", "/webhooks", "/channels"):
        async with http.post(
            sim.base_url + GW + path,
            data=raw,
            headers={**GW_HEADERS, "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 400, (path, raw)
            body = await resp.json(content_type=None)
            assert isinstance(body["message"], str)


async def test_auth_failures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    for headers in ({}, {"x-api-key": "wrong"}):
        answer = await gw(http, sim, "GET", "/conversations", headers=headers)
        assert (answer.status, answer.content_type) == (401, "application/problem+json")
        assert answer.json["message"] == "Access Denied"
        assert answer.json["errors"] == [{"message": "Access Denied", "code": "access_denied"}]
        assert REF.match(answer.json["referenceId"])
    forbidden = await gw(
        http, sim, "GET", "/conversations", headers={**GW_HEADERS, "X-8x8-Tenant": "other"}
    )
    assert forbidden.status == 403
    assert forbidden.json == {
        "message": "The tenant does not belong to customer.",
        "errors": ["Header X-8x8-Tenant doesn't match tenant information for customerId=c1"],
    }
    matching = await gw(
        http, sim, "GET", "/conversations", headers={**GW_HEADERS, "X-8x8-Tenant": "t1"}
    )
    assert matching.status == 200
    assert [r.status for r in sim.requests] == [401, 401, 403, 200]


async def test_unknown_paths_and_methods_answer_json(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    missing = await gw(http, sim, "GET", "/nothing-here")
    assert missing.status == 404 and "/chat-gateway/v1/nothing-here" in missing.json["message"]
    wrong = await gw(http, sim, "DELETE", "/conversations")
    assert wrong.status == 405 and "GET" in wrong.headers["Allow"]
    assert wrong.json["message"] == "Method Not Allowed"


async def test_an_oversized_body_is_a_json_413(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = b'{"channelId": "' + b"x" * (1024 * 1024 + 1) + b'"}'
    async with http.post(
        sim.base_url + GW + "/conversations",
        data=body,
        headers={**GW_HEADERS, "Content-Type": "application/json"},
    ) as resp:
        assert resp.status == 413
        assert "message" in await resp.json(content_type=None)
