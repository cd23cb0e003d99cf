"""The Real-time Metrics client against the simulator over real HTTP, and its pure parsers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bridge.eightbyeight.auth import basic_auth
from bridge.eightbyeight.realtime import (
    QueueFigures,
    RealtimeConfig,
    RealtimeMetrics,
    parse_agents,
    parse_queue,
)
from bridge.simulator import Simulator, SimulatorConfig, running_simulator
from bridge.simulator.realtime_api import PATH


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with running_simulator(SimulatorConfig(tenant_id="t9")) as s:
        yield s


def client(sim: Simulator, *, secret: str | None = None, tenant: str | None = "t9",
           **timing: float) -> RealtimeMetrics:  # fmt: skip
    config = RealtimeConfig(
        base_url=sim.base_url + PATH,
        token_url=sim.base_url + "/oauth/v2/token",
        client_id=SecretStr(sim.config.rtm_client_id),
        client_secret=SecretStr(secret or sim.config.rtm_client_secret),
        tenant_id=tenant,
        **timing,
    )
    return RealtimeMetrics(config)


async def _create(sim: Simulator) -> str:
    from bridge.eightbyeight import EightByEightConfig, make_client
    from bridge.eightbyeight.client import Customer

    chat = make_client(
        EightByEightConfig(api="gateway", base_url=sim.base_url,
                           api_key=SecretStr(sim.config.api_key), channel_id=sim.config.channel_id)
    )  # fmt: skip
    try:
        created = await chat.create_conversation(Customer(name="Ada"))
    finally:
        await chat.close()
    return created.conversation_id


async def test_queue_figures_follow_the_desk(sim: Simulator) -> None:
    rtm = client(sim, queue_ttl_s=0.0)
    try:
        ids = [await _create(sim) for _ in range(5)]
        figures = await rtm.queue("101")
        assert figures == QueueFigures("101", "Customer Support", 5, None)
        await sim.desk.accept(ids[0], agent_name="Anna", agent_id="ag-anna")
        figures = await rtm.queue("101")
        assert figures is not None and figures.waiting == 4 and figures.avg_wait_ms is not None
        sim.realtime_overrides["101"] = {"interactionsAvgWaitTime.int-30m": 240_000}
        assert (await rtm.queue("101")) == QueueFigures("101", "Customer Support", 4, 240_000)
    finally:
        await rtm.close()


async def test_queue_figures_are_cached(sim: Simulator) -> None:
    rtm = client(sim, queue_ttl_s=60.0)
    try:
        await rtm.queue("101")
        await _create(sim)
        assert (await rtm.queue("101")) == QueueFigures("101", "Customer Support", 0, None)
        calls = [r for r in sim.requests if r.path.endswith("/queues/101")]
        assert len(calls) == 1
    finally:
        await rtm.close()


async def test_agent_names_from_the_summary_one_fetch_for_many(sim: Simulator) -> None:
    sim.add_agent("ag-bo", "Bo Lind")
    rtm = client(sim)
    try:
        assert await rtm.agent_name("ag-bo") == "Bo Lind"
        assert await rtm.agent_name("ag-bo") == "Bo Lind"
        assert len([r for r in sim.requests if r.path.endswith("/agents")]) == 1
        assert sim.token_requests == 1
    finally:
        await rtm.close()


async def test_an_unknown_agent_refetches_the_list_after_the_miss_interval(sim: Simulator) -> None:
    rtm = client(sim, agents_miss_refresh_s=0.0)
    try:
        assert await rtm.agent_name("ag-new") is None
        sim.add_agent("ag-new", "Cleo")
        assert await rtm.agent_name("ag-new") == "Cleo"
    finally:
        await rtm.close()


async def test_failures_say_nothing_and_are_remembered(sim: Simulator) -> None:
    sim.faults.fail_next("realtime", count=5, status=503)
    rtm = client(sim, failure_ttl_s=60.0)
    try:
        assert await rtm.queue("101") is None
        assert await rtm.agent_name("ag-x") is None
        # two attempts, then no call at all while the failure is remembered
        assert len([r for r in sim.requests if PATH in r.path]) == 2
    finally:
        await rtm.close()


async def test_wrong_credentials_and_wrong_tenant_fail_quietly(sim: Simulator) -> None:
    for rtm in (client(sim, secret="wrong"), client(sim, tenant="other")):
        try:
            assert await rtm.queue("101") is None
        finally:
            await rtm.close()


async def test_chat_credentials_do_not_open_the_metrics_api(sim: Simulator) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        auth = {
            "Authorization": basic_auth(
                SecretStr(sim.config.api_key), SecretStr(sim.config.api_secret)
            )
        }
        async with http.post(sim.base_url + "/oauth/v2/token", headers=auth,
                             data={"grant_type": "client_credentials"}) as r:  # fmt: skip
            token = (await r.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(sim.base_url + PATH + "/queues/101", headers=headers) as r:
            assert r.status == 401
        async with http.get(sim.base_url + PATH + "/agents", headers=headers,
                            params={"summary": "true"}) as r:  # fmt: skip
            assert r.status == 401


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"id": "1", "name": "Sales", "metrics": [{"key": "interactionsWaitInQueue.rt", "value": 3},
          {"key": "interactionsAvgWaitTime.int-30m", "value": "90000"}]},
         QueueFigures("q", "Sales", 3, 90000.0)),
        ([{"id": "1", "name": "Sales", "metrics": []}], QueueFigures("q", "Sales", None, None)),
        ({"name": " ", "metrics": [{"key": "interactionsWaitInQueue.rt", "value": None},
          {"key": "interactionsAvgWaitTime.int-30m", "value": None},
          {"key": "interactionsAvgWaitTime.today", "value": 5.5}]},
         QueueFigures("q", None, None, 5.5)),
        ({"metrics": {"interactionsWaitInQueue.rt": "-1", "interactionsAvgWaitTime.today": "NaN"}},
         QueueFigures("q", None, None, None)),
        ("nonsense", None),
        ([], None),
    ],
)  # fmt: skip
def test_parse_queue(body: object, expected: QueueFigures | None) -> None:
    assert parse_queue("q", body) == expected


def test_parse_agents_skips_rows_without_id_and_name() -> None:
    body = [{"id": "a", "name": "Ann "}, {"id": "b"}, {"name": "x"}, {"id": "c", "name": ""}, 7]
    assert parse_agents(body) == {"a": "Ann"}
    assert parse_agents({"not": "a list"}) == {}


async def test_queue_notice_words_the_live_figures(sim: Simulator) -> None:
    from bridge.handoff import Handoff
    from bridge.queue_status import queue_notice

    rtm = client(sim)
    try:
        for _ in range(5):
            await _create(sim)
        sim.realtime_overrides["101"] = {"interactionsAvgWaitTime.int-30m": 4.5 * 60_000}
        assert await queue_notice(Handoff(queue="101"), rtm) == (
            "You're in the queue for Customer Support. There are about 4 people ahead of you; "
            "the wait is usually under 5 minutes."
        )
    finally:
        await rtm.close()


@pytest.mark.parametrize(
    ("path", "params", "headers", "status"),
    [
        ("/agents", {"summary": "true", "size": "abc"}, {}, 400),
        ("/agents", {"summary": "true", "size": "5000"}, {}, 400),
        ("/agents", {"summary": "true", "page": "-1"}, {}, 400),
        ("/agents", {}, {}, 400),  # agent metrics are not served
        ("/agents", {"summary": "true"}, {"X-Tenant-Info": "other"}, 400),
        ("/queues/999", {}, {}, 404),
        ("/queues/101", {}, {}, 200),
    ],
)
async def test_the_simulated_metrics_api_answers_bad_input_with_4xx(
    sim: Simulator, path: str, params: dict[str, str], headers: dict[str, str], status: int
) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        basic = basic_auth(
            SecretStr(sim.config.rtm_client_id), SecretStr(sim.config.rtm_client_secret)
        )
        async with http.post(sim.base_url + "/oauth/v2/token", headers={"Authorization": basic},
                             data={"grant_type": "client_credentials"}) as r:  # fmt: skip
            token = (await r.json())["access_token"]
        auth = {"Authorization": f"Bearer {token}", **headers}
        async with http.get(sim.base_url + PATH + path, params=params, headers=auth) as r:
            assert r.status == status
            assert isinstance(await r.json(), (dict, list))
