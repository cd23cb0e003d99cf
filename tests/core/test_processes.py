"""Real `handoff-bridge serve` processes: killed mid-stream, and two of them on one Redis.

They run on the machine's Redis; one of them also on the tests' Redis Cluster (CI), and every
one of them there with TEST_REDIS_CLUSTER=all."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from itertools import cycle

import aiohttp
import pytest
from aiohttp import web

from bridge.eightbyeight import make_client
from bridge.eightbyeight.client import ChatClient, Customer
from bridge.handoff import Escalated, Handoff, on_action
from bridge.ids import SenderId
from bridge.simulator import Simulator, SimulatorConfig, running_simulator
from bridge.store import open_store
from bridge.store.base import Store, partition_of
from tests.core.conftest import bridge_settings, now_ms, serve_app
from tests.support.rasa_stand_in import RasaStandIn
from tests.support.serve_process import ServeProcess, free_port
from tests.support.store_rules import key_violations
from tests.support.waiting import eventually, relay_settled

JOINED = "#EXTERNAL_agent_joined"


@pytest.fixture(
    params=["redis", "cluster"] if os.environ.get("TEST_REDIS_CLUSTER") == "all" else ["redis"]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """The `REDIS_URL` of the processes: the machine's Redis, or the tests' Redis Cluster."""
    name = "redis_cluster_url" if request.param == "cluster" else "real_redis_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def world(
    api: str, store_url: str, key_prefix: str, rasa: tuple[RasaStandIn, str]
) -> AsyncIterator[tuple[Simulator, RasaStandIn, Store, ChatClient, dict[str, str]]]:
    stand_in, rasa_url = rasa
    # 8x8 keeps retrying while a bridge is down (several seconds in all).
    delays = (0.1, 0.2, 0.5, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0)
    cfg = SimulatorConfig(api_key="key-7f3a9e", api_secret="secret-9c2b4d", tenant_id="t1", customer_id="c1", channel_id="ch1",
                          queue_id="101", webhook_url=None, api=api, delivery_retry_delays=delays)  # fmt: skip
    async with running_simulator(cfg) as sim:
        settings = bridge_settings(sim, rasa_url, api)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("EIGHTBYEIGHT_", "RASA_", "REDIS_"))
        }
        env.update({
            "EIGHTBYEIGHT_API": api, "EIGHTBYEIGHT_BASE_URL": sim.base_url, "EIGHTBYEIGHT_API_KEY": "key-7f3a9e",
            "EIGHTBYEIGHT_API_SECRET": "secret-9c2b4d", "EIGHTBYEIGHT_TENANT_ID": "t1", "EIGHTBYEIGHT_CHANNEL_ID": "ch1",
            "RASA_URL": rasa_url, "REDIS_URL": store_url, "REDIS_KEY_PREFIX": key_prefix,
            "RELAY_LEASE_TTL_MS": "1500", "RELAY_RETRY_CAP_S": "0.5", "LOG_LEVEL": "WARNING",
            "HANDOFF_AGENT_MESSAGE_FORMAT": "{text}",  # these tests compare the agent's words
        })  # fmt: skip
        store = await open_store(store_url, prefix=key_prefix, partitions=settings.relay_partitions)
        chat = make_client(settings.eightbyeight())
        yield sim, stand_in, store, chat, env
        await chat.close()
        await store.close()


async def _escalate(store: Store, chat: ChatClient, sender: str) -> str:
    created = await chat.create_conversation(Customer(name=sender))
    s = SenderId(sender)
    step = on_action(Handoff(), Escalated(created.conversation_id, reopened=False), now_ms())
    assert await store.save_handoff(s, step.handoff.to_fields(), 0)
    await store.link(s, created.conversation_id)
    return created.conversation_id


@pytest.fixture
def processes() -> Iterator[list[ServeProcess]]:
    started: list[ServeProcess] = []
    yield started
    for p in started:
        p.stop()


async def test_serve_killed_and_restarted_mid_stream_loses_nothing(world, processes) -> None:  # type: ignore[no-untyped-def]
    sim, rasa, store, chat, env = world
    serve = ServeProcess(env, free_port())
    processes.append(serve)
    await serve.start()
    sim.set_webhook_url(f"{serve.url}/8x8/events")
    cid = await _escalate(store, chat, "kim")
    await sim.desk.accept(cid, agent_name="Anna")
    expected = [f"n{k}" for k in range(12)]
    for k, text in enumerate(expected):
        await sim.desk.say(cid, text)
        if k == 4:
            serve.kill()  # mid-stream: some events accepted, some in flight, some not sent yet
            await serve.start()
        await asyncio.sleep(0.05)
    await sim.idle(timeout=30)  # every event accepted (8x8 retried what a dead bridge missed)
    await relay_settled(store)
    assert rasa.texts("kim") == expected
    assert rasa.timeline("kim").count(JOINED) == 1


async def _round_robin(urls: list[str]) -> web.Application:
    """A load balancer: alternates 8x8's webhook calls between the bridges."""
    targets = cycle(urls)
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower().startswith(("x-8x8", "content-type"))
        }
        async with session.post(f"{next(targets)}/8x8/events", data=body, headers=headers) as r:
            return web.Response(
                status=r.status, body=await r.read(), content_type="application/json"
            )

    app = web.Application()
    app.router.add_post("/8x8/events", forward)

    async def close(_app: web.Application) -> None:
        await session.close()

    app.on_cleanup.append(close)
    return app


async def test_two_serve_processes_on_one_redis_keep_order_and_double_nothing(
    world, processes
) -> None:  # type: ignore[no-untyped-def]
    sim, rasa, store, chat, env = world
    a, b = ServeProcess(env, free_port()), ServeProcess(env, free_port())
    processes.extend([a, b])
    await asyncio.gather(a.start(), b.start())
    balancer = await serve_app(await _round_robin([a.url, b.url]))
    sim.set_webhook_url(str(balancer.make_url("/8x8/events")))
    senders = [f"p{i}" for i in range(20)]
    cids = await asyncio.gather(*(_escalate(store, chat, s) for s in senders))

    async def talk(cid: str, sender: str) -> None:
        await sim.desk.accept(cid, agent_name="Anna")
        for k in range(10):
            await sim.desk.say(cid, f"{sender}-{k}")

    await asyncio.gather(*(talk(c, s) for c, s in zip(cids, senders, strict=True)))
    await sim.idle(timeout=30)  # every event accepted (8x8 retried what a dead bridge missed)
    await relay_settled(store)
    for s in senders:
        assert rasa.texts(s) == [f"{s}-{k}" for k in range(10)]
        assert rasa.timeline(s).count(JOINED) == 1
    # Both relays took a share (polled: a share can be mid-handover at any given instant).
    owned: list[int] = []
    for _ in range(50):
        owned = [await _owned_partitions(p) for p in (a, b)]
        if all(n > 0 for n in owned) and sum(owned) == 16:
            break
        await asyncio.sleep(0.1)
    assert all(n > 0 for n in owned) and sum(owned) == 16, owned
    await balancer.close()


@pytest.mark.parametrize("api", ["gateway"])
@pytest.mark.parametrize("store_url", ["cluster"], indirect=True)
async def test_two_serve_processes_on_a_redis_cluster(world, processes) -> None:  # type: ignore[no-untyped-def]
    """The same two processes, with `REDIS_URL=redis+cluster://...`: every step of the webhook,
    the relay and the actions runs on a three-master Redis Cluster; afterwards every key they
    left has a TTL or an owner (the key rule of bridge/store/keys.py)."""
    await test_two_serve_processes_on_one_redis_keep_order_and_double_nothing(world, processes)
    _sim, _rasa, store, _chat, _env = world
    assert await key_violations(store) == []


async def _owned_partitions(serve: ServeProcess) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{serve.url}/metrics") as r:
        text = await r.text()
    line = next(x for x in text.splitlines() if x.startswith("handoff_relay_partitions_owned "))
    return int(float(line.split()[1]))


async def test_sigterm_finishes_the_delivery_in_flight_then_exits(world, processes) -> None:  # type: ignore[no-untyped-def]
    sim, rasa, store, chat, env = world
    serve = ServeProcess(env, free_port())
    processes.append(serve)
    await serve.start()
    sim.set_webhook_url(f"{serve.url}/8x8/events")
    cid = await _escalate(store, chat, "sol")
    await sim.desk.accept(cid, agent_name="Anna")
    await eventually(lambda: JOINED in rasa.timeline("sol"), 10, "join")
    rasa.delay_s = 1.5  # Rasa is slow: the next push is still in flight when we stop
    before = rasa.requests
    await sim.desk.say(cid, "last words")
    await eventually(lambda: rasa.requests > before, 10, "the push to start")
    assert serve.proc is not None
    serve.proc.send_signal(signal.SIGTERM)
    code = await asyncio.get_running_loop().run_in_executor(None, serve.proc.wait, 20)
    assert code == 0
    assert rasa.texts("sol") == ["last words"]  # the push completed...
    partition = partition_of(cid, store.partitions)
    assert await store.read_events(partition, 10) == []  # ...and was acknowledged


async def test_messages_sent_while_serve_was_killed_past_8x8s_retries_arrive_after_restart(
    world, processes, api
) -> None:  # type: ignore[no-untyped-def]
    sim, rasa, store, chat, env = world
    # Recovery may offer a message once 8x8 cannot bring it any more: a horizon longer than
    # this retry schedule (0.15 s in all). No periodic sweep: the start-up sweep must do it.
    env = {**env, "RECOVERY_HORIZON_S": "1", "RECOVERY_INTERVAL_S": "3600"}
    serve = ServeProcess(env, free_port())
    processes.append(serve)
    await serve.start()
    sim.set_webhook_url(f"{serve.url}/8x8/events")
    cid = await _escalate(store, chat, "kim")
    await sim.desk.accept(cid, agent_name="Anna")
    await eventually(lambda: JOINED in rasa.timeline("kim"), what="the join")
    sim.set_retry_delays((0.05, 0.1))
    serve.kill()
    expected = ["are you there?", "I found your order", "it ships today"]
    for text in expected:
        await sim.desk.say(cid, text)
    await sim.idle(timeout=30)  # 8x8's retries ran out: every one of them given up
    assert sum(d.gave_up for d in sim.deliveries) == 3
    started = time.monotonic()
    await serve.start()
    await eventually(lambda: len(rasa.texts("kim")) >= 3, within=30, what="the three messages")
    took = time.monotonic() - started
    await relay_settled(store)
    assert rasa.texts("kim") == expected
    assert await key_violations(store) == []  # the sweep's keys too expire
    print(f"\n{api}: restart to third message: {took:.2f} s")  # the note asks for it
