"""Names and queue figures over real HTTP: simulator (8x8, with its Real-time Metrics API) ->
bridge -> Rasa stand-in."""

from __future__ import annotations

import time

from pydantic import SecretStr

from bridge.eightbyeight.client import Customer
from bridge.ids import SenderId
from bridge.simulator import SimulatorConfig
from tests.core.conftest import BridgeFactory, Harness
from tests.support.waiting import eventually

JOINED = "EXTERNAL_agent_joined"
QUEUED = "EXTERNAL_handoff_queued"
LEFT = "EXTERNAL_agent_left"
REMINDER = "EXTERNAL_handoff_queue_reminder"


# The harness's simulator keeps the default Real-time Metrics credentials.
WITH_METRICS = {
    "eightbyeight_rtm_client_id": SecretStr(SimulatorConfig().rtm_client_id),
    "eightbyeight_rtm_client_secret": SecretStr(SimulatorConfig().rtm_client_secret),
    "handoff_agent_message_format": "{agent_name}: {text}",
}


def entities(h: Harness, sender: str, intent: str) -> list[dict[str, object]]:
    return [
        {k: v for k, v in p.entities.items() if k != "handoff_event_id"}
        for p in h.rasa.pushes
        if p.sender == sender and p.intent == intent
    ]


async def test_the_agent_is_named_on_join_messages_and_leave_on_both_apis(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge(**WITH_METRICS)
    cid = await h.escalate("ana")
    await h.sim.desk.accept(cid, agent_name="Anna Berg", agent_id="ag-anna")
    await h.sim.desk.say(cid, "Hello, how can I help?")
    await h.sim.desk.leave(cid)
    await eventually(lambda: entities(h, "ana", LEFT) != [], 15, "the leave")
    assert entities(h, "ana", JOINED) == [{"agent": "Anna Berg"}]
    assert entities(h, "ana", LEFT) == [{"agent": "Anna Berg"}]
    assert h.rasa.texts("ana") == ["Anna Berg: Hello, how can I help?"]


async def test_without_metrics_credentials_the_gateway_agent_stays_unnamed(
    make_bridge: BridgeFactory, api: str
) -> None:
    h = await make_bridge(handoff_agent_message_format="{agent_name}: {text}")
    cid = await h.escalate("bea")
    await h.sim.desk.accept(cid, agent_name="Anna Berg", agent_id="ag-anna")
    await h.sim.desk.say(cid, "Hello")
    await eventually(lambda: h.rasa.texts("bea") != [], 15, "the message")
    if api == "gateway":  # events carry only the id: neutral wording, the words alone
        assert entities(h, "bea", JOINED) == [{}]
        assert h.rasa.texts("bea") == ["Hello"]
    else:  # chat-v2 events carry agentName
        assert entities(h, "bea", JOINED) == [{"agent": "Anna Berg"}]
        assert h.rasa.texts("bea") == ["Anna Berg: Hello"]
    assert not [r for r in h.sim.requests if "realtime-metrics" in r.path]


async def test_the_queued_notice_carries_the_queue_name_and_its_figures(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge(**WITH_METRICS)
    h.sim.realtime_overrides["101"] = {"interactionsAvgWaitTime.int-30m": 4 * 60_000 + 1}
    for _ in range(4):  # four people already wait (on other channels: not this bridge's)
        await h.chat.create_conversation(Customer(name="someone"))
    await h.escalate("cai")
    await eventually(lambda: entities(h, "cai", QUEUED) != [], 15, "the queued notice")
    assert entities(h, "cai", QUEUED) == [
        {"queue": "Customer Support", "queue_ahead": "4", "queue_wait": "5"}
    ]


async def test_a_failing_metrics_api_leaves_the_wait_unsaid_and_the_handoff_going(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge(**WITH_METRICS)
    h.sim.faults.fail_next("realtime", count=50, status=503)
    cid = await h.escalate("dee")
    await h.sim.desk.accept(cid, agent_name="Anna Berg", agent_id="ag-anna")
    await h.sim.desk.say(cid, "Hello")
    await eventually(lambda: h.rasa.texts("dee") != [], 15, "the message")
    assert entities(h, "dee", QUEUED) == [{"queue": "Customer Support"}]
    assert h.rasa.texts("dee")[0].endswith("Hello")


async def test_a_transfer_names_the_next_agent(make_bridge: BridgeFactory) -> None:
    h = await make_bridge(**WITH_METRICS)
    cid = await h.escalate("eve")
    await h.sim.desk.accept(cid, agent_name="Anna Berg", agent_id="ag-anna")
    await h.sim.desk.transfer(cid, "202")
    await h.sim.desk.accept(cid, agent_name="Ben Ode", agent_id="ag-ben")
    await h.sim.desk.say(cid, "Ben here.")
    await eventually(lambda: h.rasa.texts("eve") != [], 15, "the new agent's words")
    assert entities(h, "eve", JOINED) == [{"agent": "Anna Berg"}, {"agent": "Ben Ode"}]
    assert {"queue": "Billing"} in [
        {k: v for k, v in e.items() if k == "queue"} for e in entities(h, "eve", QUEUED)
    ]
    assert h.rasa.texts("eve") == ["Ben Ode: Ben here."]


async def test_the_queue_reminder_carries_the_queues_figures_like_the_queued_notice(
    make_bridge: BridgeFactory,
) -> None:
    now = [time.time()]
    h = await make_bridge(
        clock=lambda: now[0], **WITH_METRICS, handoff_queue_reminder_s=60,
        handoff_queue_timeout_s=0,
    )  # fmt: skip
    h.sim.realtime_overrides["101"] = {"interactionsAvgWaitTime.int-30m": 90_000}
    for _ in range(2):
        await h.chat.create_conversation(Customer(name="someone"))
    await h.runtime.service.escalate(SenderId("eli"), Customer(name="Eli"), [], "")  # arms it
    await eventually(lambda: entities(h, "eli", QUEUED) != [], 15, "the queued notice")
    now[0] += 60
    await eventually(lambda: entities(h, "eli", REMINDER) != [], 15, "the reminder")
    figures = {"queue": "Customer Support", "queue_ahead": "2", "queue_wait": "2"}
    assert entities(h, "eli", QUEUED) == [figures]
    assert entities(h, "eli", REMINDER)[0] == figures


async def test_without_metrics_credentials_the_queue_reminder_carries_nothing(
    make_bridge: BridgeFactory,
) -> None:
    now = [time.time()]
    h = await make_bridge(
        clock=lambda: now[0], handoff_queue_reminder_s=60, handoff_queue_timeout_s=0
    )
    await h.runtime.service.escalate(SenderId("fay"), Customer(name="Fay"), [], "")
    await eventually(lambda: entities(h, "fay", QUEUED) != [], 15, "the queued notice")
    now[0] += 60
    await eventually(lambda: entities(h, "fay", REMINDER) != [], 15, "the reminder")
    assert entities(h, "fay", REMINDER)[0] == {}
