"""What issue 12 added, as a sandbox user sees it over HTTP (the demo bot, the embedded store,
the simulator): nobody comes (reminders, then back to the bot), outside the opening hours, and
the survey after the agent leaves. The demo bot is a stand-in for Rasa: these test the sandbox;
tests/e2e runs the same paths on a real Rasa."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.sandbox import SandboxConfig, running_sandbox
from bridge.settings import Settings
from tests.browser.test_sandbox_http import ChatStream, desk, has, say
from tests.support.waiting import eventually

CLOSED = Path(__file__).resolve().parents[1] / "e2e" / "closed-hours.yml"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_nobody_comes_the_user_is_reminded_then_back_with_the_bot(
    http: aiohttp.ClientSession,
) -> None:
    quick = settings(handoff_queue_reminder_s=1, handoff_queue_timeout_s=3)
    async with running_sandbox(SandboxConfig(port=0), quick) as sb:
        assert sb.sim is not None
        stream = ChatStream(http, f"{sb.url}/api/chat/web-q/events")
        await say(http, sb, "web-q", "/human_handoff")
        await stream.until(has("notice", "still in the queue"), "a reminder")
        await stream.until(has("notice", "no agent is available"), "the queue timeout")
        (conv,) = sb.sim.conversations.values()
        await eventually(lambda: conv.interaction is None, what="the user's leave on 8x8")
        await say(http, sb, "web-q", "hello")
        await stream.until(has("bot", "example assistant"), "the bot again")
        await stream.close()


async def test_outside_the_opening_hours_the_bot_stays(http: aiohttp.ClientSession) -> None:
    async with running_sandbox(
        SandboxConfig(port=0), settings(handoff_hours_file=str(CLOSED))
    ) as sb:
        assert sb.sim is not None
        stream = ChatStream(http, f"{sb.url}/api/chat/web-o/events")
        await say(http, sb, "web-o", "/human_handoff")
        await stream.until(has("notice", "Our agents are available"), "out of hours")
        assert sb.sim.conversations == {}
        await stream.close()


async def test_after_the_agent_leaves_the_bot_asks_one_question(
    http: aiohttp.ClientSession,
) -> None:
    async with running_sandbox(SandboxConfig(port=0), settings()) as sb:
        assert sb.sim is not None
        stream = ChatStream(http, f"{sb.url}/api/chat/web-s/events")
        await say(http, sb, "web-s", "/human_handoff")
        await stream.until(has("notice", "queue"), "queued")
        (cid,) = sb.sim.conversations
        await desk(http, sb, f"{cid}/accept", agentName="Anna")
        await desk(http, sb, f"{cid}/leave")
        survey = await stream.until(has("notice", "Did the agent solve your problem?"), "survey")
        assert survey["buttons"] == [
            {"title": "Yes", "payload": "/handoff_survey_good"},
            {"title": "No", "payload": "/handoff_survey_bad"},
        ]
        await say(http, sb, "web-s", "/handoff_survey_good")  # what clicking "Yes" sends
        await stream.until(has("notice", "Glad to hear it"), "the thanks")
        await stream.close()


async def test_restart_during_a_handoff_leaves_the_8x8_interaction(
    http: aiohttp.ClientSession,
) -> None:
    async with running_sandbox(SandboxConfig(port=0), settings()) as sb:
        assert sb.sim is not None and sb.demo_bot is not None
        stream = ChatStream(http, f"{sb.url}/api/chat/web-r/events")
        await say(http, sb, "web-r", "/human_handoff")
        await stream.until(has("notice", "queue"), "queued")
        (conv,) = sb.sim.conversations.values()
        await desk(http, sb, f"{conv.id}/accept", agentName="Anna")
        await stream.until(has("notice", "chatting with Anna"), "the agent")
        await say(http, sb, "web-r", "/restart")
        await eventually(lambda: conv.interaction is None, what="the user's leave on 8x8")
        assert sb.demo_bot.tracker("web-r").slots["handoff_active"] is False
        await say(http, sb, "web-r", "hello")
        await stream.until(has("bot", "example assistant"), "the bot again")
        await stream.close()


async def test_buttons_on_the_bot_route_are_checked(http: aiohttp.ClientSession) -> None:
    async with running_sandbox(SandboxConfig(port=0), settings()) as sb:
        stream = ChatStream(http, f"{sb.url}/api/chat/web-b/events")
        odd = [
            {"title": "ok", "payload": "/greet"},
            {"title": 3},
            "x",
            {"title": "t", "payload": ""},
        ]
        for buttons in (odd, "not a list"):
            body = {"recipient_id": "web-b", "text": "pick one", "buttons": buttons}
            async with http.post(f"{sb.url}/bot", json=body) as response:
                assert response.status == 200
        await eventually(lambda: len(stream.items) == 2, what="both messages")
        assert stream.items[0]["buttons"] == [{"title": "ok", "payload": "/greet"}]
        assert "buttons" not in stream.items[1]
        await stream.close()
