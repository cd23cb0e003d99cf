"""End to end, for both 8x8 APIs: a user of the example bot on a real Rasa 3.6, the bridge as a
real `serve` process, the simulator as 8x8 (the harness: conftest.py).

Everything the user sees is checked as one ordered list (`seen`): after each step the bridge is
let settle (every 8x8 event delivered and handled) and the receiver must hold exactly `seen`,
so a missing, doubled, reordered or extra message fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
from aiohttp import web

from bridge.eightbyeight.realtime import RealtimeConfig
from bridge.simulator import SimConversation, SimulatorConfig
from bridge.simulator.chat_v2_api import ChatV2Api
from bridge.simulator.gateway_api import GatewayApi
from tests.e2e.conftest import E2E, RasaServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]  # the first test also trains Rasa

QUEUE = "Customer Support"  # the simulator's name for queue 101, which both APIs send
FORWARD_TURN = ["action_handoff_forward", "action_listen"]


def agent_name(e2e: E2E, name: str) -> str | None:
    """The agent's name as the bridge learns it: Chat API v2 events carry it, the gateway's
    do not (its name then comes from the Real-time Metrics API, when configured)."""
    knows = e2e.api == "chat-v2" or "EIGHTBYEIGHT_RTM_CLIENT_ID" in e2e.bridge.env
    return name if knows else None


def shown(e2e: E2E, cid: str, text: str) -> str:
    """An agent's words as the user sees them (the default HANDOFF_AGENT_MESSAGE_FORMAT)."""
    agent = e2e.sim.conversation(cid).agent
    name = agent_name(e2e, agent.name) if agent else None
    return f"{name}: {text}" if name else text


async def escalate(e2e: E2E, sender: str, text: str, seen: list[str | None]) -> None:
    """The user asks for a person: told they are being connected, then that they are queued."""
    say = e2e.say_
    replies = await e2e.say(sender, text)
    assert replies[:1] == [say("utter_handoff_connecting")]
    await e2e.settled()
    seen += [say("utter_handoff_connecting"), say("utter_handoff_queued", handoff_queue=QUEUE)]
    assert e2e.inbox.texts(sender) == seen
    assert await e2e.slot(sender, "handoff_active") is True


async def agent_takes_over(
    e2e: E2E, sender: str, seen: list[str | None], agent: str = "Anna"
) -> SimConversation:
    """The user escalates ("/human_handoff") and an agent accepts: the user is told (by name
    where 8x8 gives it). Returns the 8x8 conversation."""
    await escalate(e2e, sender, "/human_handoff", seen)
    conv = e2e.conversation_of(sender)
    await e2e.sim.desk.accept(conv.id, agent_name=agent)
    await e2e.settled()
    seen.append(e2e.say_("utter_handoff_agent_joined", handoff_agent=agent_name(e2e, agent)))
    assert e2e.inbox.texts(sender) == seen
    return conv


async def agent_talks(
    e2e: E2E, sender: str, cid: str, texts: list[str], seen: list[str | None]
) -> None:
    for text in texts:
        await e2e.sim.desk.say(cid, text)
    await e2e.settled()
    seen += [shown(e2e, cid, text) for text in texts]
    assert e2e.inbox.texts(sender) == seen


async def user_talks_to_agent(e2e: E2E, sender: str, cid: str, text: str) -> None:
    """A turn during the handoff: it reaches the agent as the user's, and the bot says nothing
    (neither on the channel nor in the tracker)."""
    before = len(e2e.inbox.messages(sender))
    assert await e2e.say(sender, text) == [], "the bot answered a turn meant for the agent"
    last = e2e.sim.conversation(cid).messages[-1]
    assert (last.author_type, last.text) == ("user", text)
    turn = await e2e.last_turn(sender, text)
    assert turn.actions == FORWARD_TURN
    assert turn.bot_texts == []
    await e2e.settled()
    assert len(e2e.inbox.messages(sender)) == before


async def test_escalate_queue_agent_talk_leave_and_reopen_the_same_conversation(e2e: E2E) -> None:
    say = e2e.say_
    sender = e2e.new_sender()
    seen: list[str | None] = []

    # The bot answers on its own.
    assert await e2e.say(sender, "hello") == [say("utter_greet")]
    seen.append(say("utter_greet"))

    # Escalate: a new 8x8 conversation with the bot transcript, queued.
    await escalate(e2e, sender, "I want to talk to a human", seen)
    conv = e2e.conversation_of(sender)
    assert [(m.author_type, m.text) for m in conv.history] == [
        ("user", "hello"),
        ("bot", say("utter_greet")),
        ("user", "I want to talk to a human"),
    ]
    assert conv.state == "active" and len(conv.interactions) == 1

    # An agent accepts: the user is told (by name where 8x8 gives it).
    await e2e.sim.desk.accept(conv.id, agent_name="Anna")
    await e2e.settled()
    seen.append(say("utter_handoff_agent_joined", handoff_agent=agent_name(e2e, "Anna")))
    assert e2e.inbox.texts(sender) == seen

    # The agent's texts reach the user in order, and stay in Rasa's transcript.
    agent_texts = ["Hi, I'm Anna from support.", "Let me look into that.", "One moment, please."]
    await agent_talks(e2e, sender, conv.id, agent_texts, seen)
    events = (await e2e.tracker(sender))["events"]
    pushed = [e for e in events if e["event"] == "bot" and "handoff" in (e.get("metadata") or {})]
    assert [e["text"] for e in pushed] == [shown(e2e, conv.id, t) for t in agent_texts]
    assert {e["metadata"]["handoff"]["agent"] for e in pushed} == {agent_name(e2e, "Anna")}

    # The user's turns reach the agent and the bot stays silent, whatever NLU makes of them:
    # things the bot would answer itself (hours, a greeting) and a request it would treat as
    # a fallback (out of scope: it would escalate).
    for text, intent in [
        ("My invoice is wrong, I was charged twice", None),
        ("what are your hours", "ask_hours"),
        ("hello", "greet"),
    ]:
        await user_talks_to_agent(e2e, sender, conv.id, text)
        if intent is not None:
            assert (await e2e.last_turn(sender, text)).intent == intent
    user_texts = [m.text for m in conv.messages if m.author_type == "user"]
    assert user_texts == [
        "My invoice is wrong, I was charged twice",
        "what are your hours",
        "hello",
    ]
    assert all(m.interaction_id == conv.interactions[0].id for m in conv.messages)

    # The agent leaves: the user is told, and the bot answers the next message itself.
    on_8x8 = len(conv.messages)
    await e2e.sim.desk.leave(conv.id)
    await e2e.settled()
    seen.append(say("utter_handoff_agent_left", handoff_agent=agent_name(e2e, "Anna")))
    seen.append(say("utter_handoff_survey"))  # the example bot's question; ignored here
    assert e2e.inbox.texts(sender) == seen
    assert await e2e.slot(sender, "handoff_active") is False
    assert await e2e.say(sender, "hello") == [say("utter_greet")]
    seen.append(say("utter_greet"))
    assert await e2e.say(sender, "what are your hours") == [say("utter_hours")]
    seen.append(say("utter_hours"))
    assert len(conv.messages) == on_8x8  # the bot's own turns do not go to 8x8
    assert e2e.sim.conversation(conv.id).state == "idle"

    # The same user escalates again: the same conversation is reopened (a new interaction, the
    # request as a new message on it), not a new one.
    await escalate(e2e, sender, "agent please", seen)
    assert e2e.conversation_of(sender) is conv
    assert len(e2e.sim.conversations) == 1
    assert len(conv.interactions) == 2
    assert conv.interactions[0].end_ms is not None and conv.interactions[1].live
    last = conv.messages[-1]
    assert (last.author_type, last.text, last.interaction_id) == (
        "user",
        "agent please",
        conv.interactions[1].id,
    )

    # ... and the reopened handoff works like the first one.
    await e2e.sim.desk.accept(conv.id, agent_name="Ben")
    await e2e.settled()
    seen.append(say("utter_handoff_agent_joined", handoff_agent=agent_name(e2e, "Ben")))
    assert e2e.inbox.texts(sender) == seen
    await agent_talks(e2e, sender, conv.id, ["Hello again, Ben here."], seen)
    await user_talks_to_agent(e2e, sender, conv.id, "thanks Ben")


async def test_end_handoff_ends_the_8x8_interaction_and_returns_the_user_to_the_bot(
    e2e: E2E,
) -> None:
    say = e2e.say_
    sender = e2e.new_sender()
    seen: list[str | None] = []

    conv = await agent_takes_over(e2e, sender, seen)
    await agent_talks(e2e, sender, conv.id, ["How can I help?"], seen)
    await user_talks_to_agent(e2e, sender, conv.id, "what are your hours")

    # The user ends the chat: told at once, in that turn.
    assert await e2e.say(sender, "/end_handoff") == [say("utter_handoff_ended")]
    seen.append(say("utter_handoff_ended"))
    turn = await e2e.last_turn(sender, "/end_handoff")
    assert turn.actions == FORWARD_TURN  # the policy routes it; the forward action ends
    assert turn.bot_texts == [say("utter_handoff_ended")]
    assert await e2e.slot(sender, "handoff_active") is False

    # 8x8: the user left, the interaction ended, the command never reached the agent as text.
    live = e2e.sim.conversation(conv.id)
    assert live.user_present is False
    assert live.state == "idle" and live.interaction is None and live.agent is None
    assert "/end_handoff" not in [m.text for m in live.messages]

    # 8x8's own events about the leave reach the bridge and say nothing more to the user.
    await e2e.settled()
    assert e2e.inbox.texts(sender) == seen

    # The bot answers again; there is nothing left to end.
    assert await e2e.say(sender, "what are your hours") == [say("utter_hours")]
    assert await e2e.say(sender, "/end_handoff") == [say("utter_no_agent_chat")]
    seen += [say("utter_hours"), say("utter_no_agent_chat")]
    await e2e.settled()
    assert e2e.inbox.texts(sender) == seen
    assert len(e2e.sim.conversations) == 1


LEAVE_ANSWER_DELAY_S = 1.0


@pytest.fixture
def leave_answered_late() -> Iterator[None]:
    """8x8 answers the user's leave only after its webhook events about it are out (a real
    network can do that). Patches the simulator's leave routes before the simulator starts."""
    patch = pytest.MonkeyPatch()
    for api_class in (ChatV2Api, GatewayApi):
        answer = api_class.leave

        async def late(
            self: object, request: web.Request, answer: object = answer
        ) -> web.StreamResponse:
            response: web.StreamResponse = await answer(self, request)  # type: ignore[operator]
            await asyncio.sleep(LEAVE_ANSWER_DELAY_S)
            return response

        patch.setattr(api_class, "leave", late)
    yield
    patch.undo()


@pytest.mark.parametrize("api", ["gateway", "chat-v2"])
async def test_end_handoff_says_nothing_more_when_8x8_reports_the_leave_before_answering_it(
    leave_answered_late: None, e2e: E2E
) -> None:
    say = e2e.say_
    sender = e2e.new_sender()
    seen: list[str | None] = []
    await agent_takes_over(e2e, sender, seen)

    assert await e2e.say(sender, "/end_handoff") == [say("utter_handoff_ended")]
    seen.append(say("utter_handoff_ended"))
    await e2e.settled()
    assert e2e.inbox.texts(sender) == seen
    assert await e2e.slot(sender, "handoff_active") is False


SESSION_EXPIRY_MARGIN_S = 0.5


async def wait_past_session_expiry(e2e: E2E, sender: str) -> None:
    """Sleep until the sender's Rasa session has expired. Rasa counts from the latest user
    event (the bridge's triggered intents count too) and starts a new session with the next
    message; the expiration time is the loaded domain's."""
    async with e2e.http.get(
        f"{e2e.rasa.url}/domain",
        params={"token": e2e.rasa.token},
        headers={"Accept": "application/json"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        expiry_s = 60 * (await resp.json())["session_config"]["session_expiration_time"]
    assert 0 < expiry_s <= 10, f"sessions expire after {expiry_s} s: not the short-session bot"
    events = (await e2e.tracker(sender))["events"]
    last_user_event = [e for e in events if e["event"] == "user"][-1]
    await asyncio.sleep(
        last_user_event["timestamp"] + expiry_s + SESSION_EXPIRY_MARGIN_S - time.time()
    )


@pytest.mark.parametrize("rasa", ["short_session_rasa"], indirect=True)
async def test_a_live_handoff_survives_rasa_session_expiry(e2e: E2E) -> None:
    """Rasa starts a new session after a pause (the bot variant's sessions expire after 3 s);
    the handoff carries over into it: the user's next message still goes to the agent, whom
    the user still hears."""
    sender = e2e.new_sender()
    seen: list[str | None] = []
    conv = await agent_takes_over(e2e, sender, seen)
    await agent_talks(e2e, sender, conv.id, ["Hi, I'm Anna."], seen)

    # A greeting, which the bot would answer, opens a new Rasa session and goes to the agent.
    await wait_past_session_expiry(e2e, sender)
    await user_talks_to_agent(e2e, sender, conv.id, "hello")
    events = (await e2e.tracker(sender))["events"]
    users = [i for i, e in enumerate(events) if e["event"] == "user"]
    between = [e["event"] for e in events[users[-2] : users[-1]]]
    assert "session_started" in between, f"no new session before 'hello': {between}"
    assert (await e2e.last_turn(sender, "hello")).intent == "greet"
    assert await e2e.slot(sender, "handoff_active") is True

    await agent_talks(e2e, sender, conv.id, ["Still here. How can I help?"], seen)


# The simulator's own Real-time Metrics credentials (its defaults), given to the bridge.
WITH_METRICS = {
    "EIGHTBYEIGHT_RTM_CLIENT_ID": SimulatorConfig().rtm_client_id,
    "EIGHTBYEIGHT_RTM_CLIENT_SECRET": SimulatorConfig().rtm_client_secret,
}


@pytest.mark.parametrize("api", ["gateway"])
@pytest.mark.parametrize("bridge_env", [WITH_METRICS], indirect=True)
async def test_gateway_agent_is_named_and_a_reopen_brings_the_agent_the_story(e2e: E2E) -> None:
    """On the Chat Gateway, whose events carry only the agent's id, the user still meets the
    agent by name (8x8's Real-time Metrics API): on the join, on each message, on the leave.
    Re-escalating by command reopens the conversation with the turns since the last handoff
    first, the command itself never reaching the agent; the queue notice gives the wait."""
    say = e2e.say_
    sender = e2e.new_sender()
    seen: list[str | None] = []
    conv = await agent_takes_over(e2e, sender, seen, agent="Anna")
    assert seen[-1] == say("utter_handoff_agent_joined", handoff_agent="Anna")
    await agent_talks(e2e, sender, conv.id, ["Hi, I'm Anna."], seen)
    assert seen[-1] == "Anna: Hi, I'm Anna."
    await e2e.sim.desk.leave(conv.id)
    await e2e.settled()
    seen.append(say("utter_handoff_agent_left", handoff_agent="Anna"))
    seen.append(say("utter_handoff_survey"))  # the example bot's question; ignored here
    assert e2e.inbox.texts(sender) == seen

    # Back with the bot, then a person again, by command (after the queue's figures, cached
    # since the first wait, were renewed).
    await asyncio.sleep(RealtimeConfig.queue_ttl_s)
    assert await e2e.say(sender, "what are your hours") == [say("utter_hours")]
    seen.append(say("utter_hours"))
    before = len(conv.messages)
    assert (await e2e.say(sender, "/human_handoff"))[:1] == [say("utter_handoff_connecting")]
    await e2e.settled()
    # Queue 101 now has a known average wait (the first interaction's) and nobody else waits.
    seen += [
        say("utter_handoff_connecting"),
        say("utter_handoff_queued", handoff_queue=QUEUE),
        say("utter_handoff_queue_wait", handoff_queue_ahead="0", handoff_queue_wait="1"),
    ]
    assert e2e.inbox.texts(sender) == seen
    sent = [(m.author_type, m.text) for m in conv.messages[before:]]
    assert sent == [("user", "what are your hours"), ("bot", say("utter_hours"))]
    assert len(conv.interactions) == 2 and conv.interactions[1].live
    assert "/human_handoff" not in [m.text for m in conv.messages + conv.history]


@contextlib.contextmanager
def stalled(rasa: RasaServer) -> Iterator[None]:
    """Rasa frozen (SIGSTOP to its process group) for the block: pushes into it wait."""
    os.killpg(rasa.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(rasa.pid, signal.SIGCONT)


def relayed_runs(e2e: E2E) -> list[int]:
    """How many messages went in the push of each agent message the bridge relayed (its log)."""
    lines = e2e.bridge.log.read_text(errors="replace").splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    return [r["run"] for r in records if r.get("event") == "relay_processed" and "run" in r]


async def test_agent_messages_sent_back_to_back_reach_the_user_once_in_order(e2e: E2E) -> None:
    """The agent writes several messages while Rasa is busy (frozen here): they wait in the
    bridge, then reach the user's channel together, through one `tracker/events` call with
    several `bot` events, each once and in order, and stay in the transcript."""
    sender = e2e.new_sender()
    seen: list[str | None] = []
    conv = await agent_takes_over(e2e, sender, seen)
    texts = ["One.", "Two.", "Three.", "Four.", "Five."]
    with stalled(e2e.rasa):
        for text in texts:
            await e2e.sim.desk.say(conv.id, text)
        await e2e.sim.idle()  # 8x8 got its answers: every message is in the bridge's stream
    await e2e.settled()
    seen += [shown(e2e, conv.id, t) for t in texts]
    assert e2e.inbox.texts(sender) == seen
    assert max(relayed_runs(e2e)) > 1, "no two messages went in one push"
    events = (await e2e.tracker(sender))["events"]
    pushed = [e for e in events if e["event"] == "bot" and "handoff" in (e.get("metadata") or {})]
    assert [e["text"] for e in pushed] == [shown(e2e, conv.id, t) for t in texts]
    markers = [e["metadata"]["handoff"]["handoff_event_id"] for e in pushed]
    assert len(set(markers)) == len(texts)
