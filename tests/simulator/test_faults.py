"""Fault injection: the next N calls of a route fail with 8x8's body for the status."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from bridge.simulator import FAULT_ROUTES, Simulator, running_simulator
from bridge.simulator.faults import Faults
from tests.simulator.conftest import (
    GW,
    GW_HEADERS,
    MakeSim,
    Receiver,
    bearer,
    call,
    config,
    gw_create,
    v2,
)
from tests.support.waiting import eventually


async def test_a_fault_answers_its_status_with_retry_after_then_clears(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    sim.faults.fail_next("create_conversation", count=2, status=503, retry_after=2)
    url = sim.base_url + GW + "/conversations"
    body = {"channelId": "ch1", "user": {}}
    for _ in range(2):
        answer = await call(http, "POST", url, headers=GW_HEADERS, json_body=body)
        assert (answer.status, answer.content_type) == (503, "application/problem+json")
        assert answer.headers["Retry-After"] == "2"
        assert answer.json["message"] == "Internal error."
        assert answer.json["errors"][0]["code"] == "internal_error"
    assert sim.conversations == {}  # the handler never ran
    assert (await call(http, "POST", url, headers=GW_HEADERS, json_body=body)).status == 202
    assert sim.faults.pending() == {}


async def test_faults_come_before_auth_and_only_hit_their_route(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    sim.faults.fail_next("get_conversation", status=500)
    cid = await gw_create(http, sim)  # another route: untouched
    answer = await call(http, "GET", f"{sim.base_url}{GW}/conversations/{cid}")  # no key
    assert answer.status == 500 and "Retry-After" not in answer.headers
    assert (await call(http, "GET", f"{sim.base_url}{GW}/conversations/{cid}")).status == 401


async def test_v2_bodies_per_status(http: aiohttp.ClientSession, v2_sim: Simulator) -> None:
    headers = await bearer(http, v2_sim)
    url = v2_sim.base_url + v2("/conversations")
    v2_sim.faults.fail_next("list_conversations", status=500)
    v2_sim.faults.fail_next("list_conversations", status=429, retry_after=1.2)
    v2_sim.faults.fail_next("list_conversations", status=401)
    v2_sim.faults.fail_next("list_conversations", status=403)
    v2_sim.faults.fail_next("list_conversations", status=400)
    server = await call(http, "GET", url, headers=headers)
    assert server.status == 500 and set(server.json) == {"message", "errors", "referenceId"}
    limited = await call(http, "GET", url, headers=headers)
    assert limited.status == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json["fault"]["detail"]["errorcode"] == "policies.ratelimit.QuotaViolation"
    refused = await call(http, "GET", url, headers=headers)
    assert refused.json["fault"]["detail"]["errorcode"] == (
        "keymanagement.service.invalid_access_token"
    )
    forbidden = await call(http, "GET", url, headers=headers)
    assert forbidden.json["message"] == "The tenant does not belong to customer."
    bad = await call(http, "GET", url, headers=headers)
    assert bad.json["message"] == "Constraint Violation"
    assert (await call(http, "GET", url, headers=headers)).status == 200


async def test_token_and_jwk_faults(http: aiohttp.ClientSession, v2_sim: Simulator) -> None:
    v2_sim.faults.fail_next("token", status=401)
    v2_sim.faults.fail_next("jwk", status=404)
    token = await call(
        http,
        "POST",
        v2_sim.base_url + "/oauth/v2/token",
        headers={"Authorization": aiohttp.encode_basic_auth("k", "s")},
        data={"grant_type": "client_credentials"},
    )
    assert (token.status, token.json["ErrorCode"]) == (401, "invalid_client")
    assert v2_sim.token_requests == 1  # failed calls count too
    jwk = await call(http, "GET", f"{v2_sim.base_url}{GW}/jwk/{v2_sim.kid}/public")
    assert (jwk.status, jwk.json["resourceType"], jwk.json["title"]) == (
        404,
        "JWKPublic",
        "Resource not found.",
    )
    assert (await call(http, "GET", f"{v2_sim.base_url}{GW}/jwk/{v2_sim.kid}/public")).status == 200


async def test_a_timeout_fault_hangs_past_the_client_timeout(
    http: aiohttp.ClientSession, make_sim: MakeSim
) -> None:
    sim = await make_sim(fault_hang_s=0.4)
    cid = await gw_create(http, sim)
    sim.faults.fail_next("send_message", timeout=True)
    url = f"{sim.base_url}{GW}/conversations/{cid}/messages"
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            url,
            headers=GW_HEADERS,
            json={"authorType": "user", "text": "lost"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ) as resp:
            await resp.read()
    assert 0.3 <= time.monotonic() - started < 2
    # The abandoned request was cancelled at once: it never answers its late 504, and it is
    # not in the request log (it got no answer).
    await eventually(lambda: sim.hangs_abandoned == 1, 2, "the hung request to be dropped")
    assert [r.status for r in sim.requests] == [202]
    sent = await call(
        http, "POST", url, headers=GW_HEADERS, json_body={"authorType": "user", "text": "kept"}
    )
    assert sent.status == 202
    assert [m.text for m in sim.conversations[cid].messages] == ["kept"]


async def test_a_hang_ends_in_504_after_fault_hang_s(
    http: aiohttp.ClientSession, make_sim: MakeSim
) -> None:
    sim = await make_sim(fault_hang_s=0.2)
    sim.faults.fail_next("list_conversations", timeout=True)
    answer = await call(http, "GET", sim.base_url + GW + "/conversations", headers=GW_HEADERS)
    assert answer.status == 504  # for a client patient enough to wait that long


async def test_stopping_frees_a_hung_request(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with running_simulator(config(receiver, fault_hang_s=30)) as sim:
        sim.faults.fail_next("list_conversations", timeout=True)
        hung = asyncio.create_task(
            call(http, "GET", sim.base_url + GW + "/conversations", headers=GW_HEADERS)
        )
        await eventually(lambda: sim.hanging == 1, 2, "the request to hang")
        started = time.monotonic()
    assert time.monotonic() - started < 2
    answer = await asyncio.gather(hung, return_exceptions=True)
    assert answer  # a 504 or a closed connection; either way nobody waits 30 s


def test_fail_next_refuses_nonsense() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="unknown route"):
        faults.fail_next("create")
    with pytest.raises(ValueError):
        faults.fail_next("token", count=0)
    with pytest.raises(ValueError):
        faults.fail_next("token", status=200)
    with pytest.raises(ValueError):
        faults.fail_next("token", retry_after=-1)
    assert faults.pending() == {}
    assert {"token", "create_conversation", "webhook_delivery", "typing"} <= FAULT_ROUTES
