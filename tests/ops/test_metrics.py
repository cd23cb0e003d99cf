"""Every funnel metric moves when its event happens, and `/metrics` exports it."""

from __future__ import annotations

import aiohttp

from bridge.eightbyeight.client import Customer
from bridge.ids import SenderId
from tests.ops.conftest import World
from tests.support.waiting import eventually


def value(world: World, name: str, **labels: str) -> float:
    return world.runtime.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_the_funnel_from_escalation_to_the_bot(world: World) -> None:
    cid = await world.live_handoff("kim")  # escalated, then an agent joined
    assert value(world, "handoff_escalations_total", trigger="asked", kind="new") == 1
    # the join is counted when its state is stored, just after Rasa heard of it
    await eventually(lambda: value(world, "handoff_time_to_agent_seconds_count") == 1, 10, "join")
    async with aiohttp.ClientSession() as http:
        url = f"{world.sim.base_url}/_sim/conversations/{cid}/transfer"
        async with http.post(url, json={"queueId": "202"}) as r:
            assert r.status == 200, await r.text()
    await eventually(lambda: value(world, "handoff_transfers_total") == 1, 10, "the transfer")
    await world.sim.desk.accept(cid, agent_name="Ben")
    await world.sim.desk.leave(cid)
    await eventually(
        lambda: value(world, "handoff_returns_to_bot_total", reason="agent_left") == 1, 10, "leave"
    )
    assert value(world, "handoff_abandoned_waits_total") == 0
    # the second agent's join (processed before the leave, in order) was not a wait for an agent
    assert value(world, "handoff_time_to_agent_seconds_count") == 1


async def test_abandoned_waits_and_failed_escalations(world: World) -> None:
    await world.live_handoff("lou", agent=None)
    await world.runtime.service.end(SenderId("lou"))
    assert value(world, "handoff_abandoned_waits_total") == 1
    assert value(world, "handoff_returns_to_bot_total", reason="user_ended") == 1
    world.sim.faults.fail_next("create_conversation", count=1, status=400)
    await world.runtime.service.escalate(SenderId("max"), Customer(name="Max"), [], "", "rule")
    assert value(world, "handoff_returns_to_bot_total", reason="escalation_failed") == 1
    assert value(world, "handoff_escalations_total", trigger="rule", kind="new") == 0


async def test_outbox_retries_dead_letters_and_the_export(world: World) -> None:
    cid = await world.live_handoff("kim")
    world.sim.faults.fail_next("send_message", count=50, status=503)
    await world.runtime.service.forward(SenderId("kim"), "hello?")
    assert not await world.runtime.service.drain_outbox(SenderId("kim"))
    assert value(world, "handoff_outbox_retries_total") == 1
    world.rasa.down_status = 400
    await world.sim.desk.say(cid, "refused by Rasa")
    await eventually(
        lambda: value(world, "handoff_dead_letters_total", reason="rejected_by_rasa") == 1, 10, "dl"
    )
    world.rasa.down_status = None
    async with aiohttp.ClientSession() as http, http.get(f"{world.url}/metrics") as r:
        text = await r.text()
    for name in ("handoff_escalations_total", "handoff_time_to_agent_seconds_bucket",
                 "handoff_abandoned_waits_total", "handoff_transfers_total",
                 "handoff_returns_to_bot_total", "handoff_recovered_messages_total",
                 "handoff_outbox_retries_total", "handoff_dead_letters_total"):  # fmt: skip
        assert name in text, name
