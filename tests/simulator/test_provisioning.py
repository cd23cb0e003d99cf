"""Webhooks and channels on both APIs; WEB_HOOK_VERIFY on create and verify (spec §2.3-2.5,
§4.3-4.4), and channels routing their conversations' events to their own webhook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bridge.eightbyeight.events import EventKind
from bridge.simulator import Simulator
from tests.simulator.conftest import (
    GW,
    GW_HEADERS,
    Answer,
    Receiver,
    bearer,
    call,
    gw_create,
    settle,
    v2,
    verify_signature,
)


@dataclass
class Api:
    """One API's dialect, for tests that run against both."""

    name: str
    call: Callable[[str, str, Any], Awaitable[Answer]]
    hooks: str
    version: str
    media: str

    def items(self, answer: Answer, collection: str) -> list[dict[str, Any]]:
        body = answer.json
        return body["_embedded"][collection] if self.name == "gateway" else body["data"]


@pytest.fixture(params=["gateway", "chat-v2"])
async def api(request: pytest.FixtureRequest, http: aiohttp.ClientSession, sim: Simulator) -> Api:
    if request.param == "gateway":
        headers, prefix = GW_HEADERS, sim.base_url + GW
        hooks, version, media = "/webhooks", "Chat Gateway v1.0", "application/hal+json"
    else:
        headers, prefix = await bearer(http, sim), sim.base_url + v2("")
        hooks, version, media = "/web-hooks", "v2.0", "application/json"

    async def go(method: str, path: str, body: Any = None) -> Answer:
        return await call(http, method, prefix + path, headers=headers, json_body=body)

    return Api(request.param, go, hooks, version, media)


async def test_webhook_crud_sends_a_verify_on_create(
    api: Api, sim: Simulator, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    uri = receiver.base + "/hooks/a"
    created = await api.call("POST", api.hooks, {"name": "a", "uri": uri, "version": api.version})
    assert (created.status, created.content_type) == (200, api.media)
    hook = created.json
    assert hook == {"id": hook["id"], "name": "a", "uri": uri, "version": api.version}

    [verify] = receiver.received
    assert verify.path == "/hooks/a"
    assert verify.json == {"notificationVersion": api.version, "eventType": "WEB_HOOK_VERIFY"}
    assert verify.event.kind == EventKind.VERIFY
    await verify_signature(http, sim, verify)  # signed like any event

    listed = await api.call("GET", api.hooks, None)
    assert listed.status == 200
    assert [h["id"] for h in api.items(listed, "webhooks")] == ["1", hook["id"]]
    got = await api.call("GET", f"{api.hooks}/{hook['id']}", None)
    assert (got.status, got.json) == (200, hook)

    moved = await api.call(
        "PUT", f"{api.hooks}/{hook['id']}", {"name": "b", "uri": receiver.base + "/hooks/b"}
    )
    assert (moved.status, moved.json["name"], moved.json["version"]) == (200, "b", api.version)
    assert receiver.received[-1].path == "/hooks/b"  # a new uri is verified too

    deleted = await api.call("DELETE", f"{api.hooks}/{hook['id']}", None)
    assert (deleted.status, deleted.text) == (204, "")
    gone = await api.call("GET", f"{api.hooks}/{hook['id']}", None)
    assert gone.status == 404 and "WebHook" in gone.json["message"]


async def test_webhook_create_fails_when_the_target_does_not_answer_2xx(
    api: Api, sim: Simulator, receiver: Receiver
) -> None:
    receiver.answer(500)
    answer = await api.call("POST", api.hooks, {"name": "a", "uri": receiver.url})
    assert (answer.status, answer.content_type) == (400, "application/problem+json")
    assert "2xx" in str(answer.json)
    assert len(sim.provisioning.webhooks) == 1  # only the seeded one
    refused = await api.call("POST", api.hooks, {"name": "a", "uri": "http://127.0.0.1:9/closed"})
    assert refused.status == 400


async def test_verify_route(api: Api, receiver: Receiver) -> None:
    ok = await api.call("POST", f"{api.hooks}/verify", {"version": "v2.0", "uri": receiver.url})
    assert (ok.status, ok.text) == (204, "")
    assert receiver.received[-1].json["notificationVersion"] == "v2.0"
    receiver.answer(503)
    failed = await api.call("POST", f"{api.hooks}/verify", {"version": "v2.0", "uri": receiver.url})
    assert failed.status == 400
    missing = await api.call("POST", f"{api.hooks}/verify", {"uri": receiver.url})
    assert missing.status == 400


@pytest.mark.parametrize(
    "body",
    [
        {"uri": "http://x.test/"},
        {"name": "a"},
        {"name": "a", "uri": "not a url"},
        {"name": "a", "uri": "ftp://x.test/"},
        {"name": "x" * 257, "uri": "http://x.test/"},
        {"name": "a", "uri": "http://x.test/", "version": "v1.0"},
    ],
)
async def test_webhook_validation(api: Api, body: dict[str, Any], receiver: Receiver) -> None:
    answer = await api.call("POST", api.hooks, body)
    assert answer.status == 400
    assert receiver.received == []  # refused before any verify


async def test_notification_version_is_a_synonym(api: Api, receiver: Receiver) -> None:
    answer = await api.call(
        "POST", api.hooks, {"name": "a", "uri": receiver.url, "notificationVersion": api.version}
    )
    assert (answer.status, answer.json["version"]) == (200, api.version)


async def test_a_webhook_in_use_cannot_be_deleted(api: Api) -> None:
    answer = await api.call("DELETE", f"{api.hooks}/1", None)
    assert answer.status == 400 and "ch1" in str(answer.json)


async def test_channel_crud(api: Api, receiver: Receiver) -> None:
    seeded = await api.call("GET", "/channels/ch1", None)
    expected = {"id": "ch1", "name": "Simulator channel", "webHookId": "1"}
    expected["routingOptions"] = {"type": "queue", "id": "101"}  # type: ignore[assignment]
    if api.name == "gateway":
        expected["type"] = "ChatAPI"
    assert (seeded.status, seeded.json) == (200, expected)

    body = {"name": "web", "webHookId": "1", "routingOptions": {"type": "queue", "id": "202"}}
    created = await api.call("POST", "/channels", body)
    assert (created.status, created.content_type) == (200, api.media)
    channel_id = created.json["id"]
    assert created.json["routingOptions"] == {"type": "queue", "id": "202"}
    listed = await api.call("GET", "/channels", None)
    assert [c["id"] for c in api.items(listed, "channels")] == ["ch1", channel_id]

    body["routingOptions"] = {"type": "queue", "id": "303"}
    updated = await api.call("PUT", f"/channels/{channel_id}", body)
    assert (updated.status, updated.json["routingOptions"]["id"]) == (200, "303")
    deleted = await api.call("DELETE", f"/channels/{channel_id}", None)
    assert (deleted.status, deleted.text) == (204, "")
    assert (await api.call("GET", f"/channels/{channel_id}", None)).status == 404
    assert (await api.call("DELETE", f"/channels/{channel_id}", None)).status == 404


async def test_channel_create_validation(api: Api) -> None:
    body = {"name": "web", "webHookId": "99", "routingOptions": {"type": "queue", "id": "202"}}
    answer = await api.call("POST", "/channels", body)
    assert answer.status == 400
    if api.name == "chat-v2":  # ValidationExceptionPayload
        assert answer.json["errors"] == [
            {"code": "invalid_webhook", "message": "Webhook ID 99 is invalid."}
        ]
        assert answer.json["validations"][0]["field"] == "webHookId"
    else:
        assert answer.json["errors"][0]["code"] == "invalid_webhook"
    for bad in (
        {"name": "web", "webHookId": "1"},
        {"name": "web", "webHookId": "1", "routingOptions": {"type": "agent", "id": "1"}},
        {"webHookId": "1", "routingOptions": {"id": "1"}},
    ):
        assert (await api.call("POST", "/channels", bad)).status == 400


async def test_a_channel_sends_its_conversations_events_to_its_own_webhook(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    hook = await call(
        http,
        "POST",
        sim.base_url + GW + "/webhooks",
        headers=GW_HEADERS,
        json_body={"name": "other", "uri": receiver.base + "/other"},
    )
    channel = await call(
        http,
        "POST",
        sim.base_url + GW + "/channels",
        headers=GW_HEADERS,
        json_body={
            "name": "other",
            "webHookId": hook.json["id"],
            "routingOptions": {"type": "queue", "id": "7"},
        },
    )
    cid = await gw_create(http, sim, channelId=channel.json["id"])
    default = await gw_create(http, sim)
    await settle(sim)
    paths = {r.json.get("conversationId"): r.path for r in receiver.events()}
    assert paths == {None: "/other", cid: "/other", default: "/8x8/events"}
    assert sim.conversations[cid].queue_id == "7"
