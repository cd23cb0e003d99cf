"""The sandbox's HTTP surface without a browser: the page, the chat's event stream, the demo
bot's Rasa routes (through the bridge's own Rasa client), and the whole handoff over HTTP.

These use the built-in demo bot, a stand-in for Rasa: they test the sandbox, never Rasa
compatibility.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bridge.errors import RetryableUpstreamError
from bridge.handoff import State
from bridge.ids import SenderId
from bridge.rasa.client import RasaClient
from bridge.sandbox import Sandbox, SandboxConfig, running_sandbox
from bridge.sandbox.errors import SandboxError
from bridge.settings import Settings
from tests.support.waiting import eventually

WAIT_S = 10.0


def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running_sandbox(SandboxConfig(port=0), settings()) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


class ChatStream:
    """Reads one sender's event stream in the background, as the page's EventSource does."""

    def __init__(self, http: aiohttp.ClientSession, url: str, last_id: int | None = None) -> None:
        self.items: list[dict[str, Any]] = []
        self.ids: list[int] = []
        headers = {"Last-Event-ID": str(last_id)} if last_id is not None else {}
        self._task = asyncio.create_task(self._read(http, url, headers))

    async def _read(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> None:
        async with http.get(url, headers=headers) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    self.ids.append(int(line[4:]))
                elif line.startswith("data: "):
                    self.items.append(json.loads(line[6:]))

    async def until(self, predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        async with asyncio.timeout(WAIT_S):
            while True:
                for item in self.items:
                    if predicate(item):
                        return item
                if self._task.done():
                    self._task.result()
                    raise AssertionError(f"the stream ended before {what}: {self.items}")
                await asyncio.sleep(0.02)

    def texts(self, kind: str) -> list[str]:
        return [i["text"] for i in self.items if i["kind"] == kind]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def joined(stream: ChatStream) -> list[str]:
    # Chat API v2 names the agent ("You're now chatting with Anna."); the gateway does not.
    return [t for t in stream.texts("notice") if "joined" in t or "chatting with" in t]


def has(kind: str, text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda item: item["kind"] == kind and text in item["text"]


async def say(http: aiohttp.ClientSession, sb: Sandbox, sender: str, text: str) -> None:
    body = {"text": text}
    async with http.post(f"{sb.url}/api/chat/{sender}/messages", json=body) as response:
        assert response.status == 200, await response.text()


async def desk(http: aiohttp.ClientSession, sb: Sandbox, path: str, **body: Any) -> Any:
    async with http.post(f"{sb.url}/_sim/conversations/{path}", json=body) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_the_page_and_what_it_loads_are_served(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sandbox.url}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        page = await response.text()
    for part in ('id="chat-pane"', 'id="desk-pane"', "/static/app.js", "/static/app.css"):
        assert part in page
    assert "http" not in page.replace("http-equiv", "")  # nothing from elsewhere: no CDN
    for asset in ("app.js", "app.css"):
        async with http.get(f"{sandbox.url}/static/{asset}") as response:
            assert response.status == 200, asset
    async with http.get(f"{sandbox.url}/api/info") as response:
        info = await response.json()
    assert info["bot"] == {
        "kind": "demo", "label": "demo bot (stand-in for Rasa)", "url": sandbox.bot_url,
    }  # fmt: skip
    assert info["api"] == "gateway"


async def test_the_chat_stream_sends_each_message_once_across_reconnects(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    stream = ChatStream(http, f"{sandbox.url}/api/chat/web-a/events")
    await say(http, sandbox, "web-a", "hi")
    await stream.until(has("bot", "example assistant"), "the greeting")
    await say(http, sandbox, "web-a", "when are you open?")
    await stream.until(has("bot", "Monday to Friday"), "the opening hours")
    await stream.close()
    assert stream.ids == [1, 2]

    # A browser that reconnects says what it saw last, and gets only what came after.
    again = ChatStream(http, f"{sandbox.url}/api/chat/web-a/events", last_id=1)
    await again.until(has("bot", "Monday to Friday"), "the replay")
    await asyncio.sleep(0.2)
    await again.close()
    assert again.ids == [2] and len(again.items) == 1

    # Another sender's stream has none of it.
    other = ChatStream(http, f"{sandbox.url}/api/chat/web-b/events")
    await asyncio.sleep(0.2)
    await other.close()
    assert other.items == []


async def test_the_page_refuses_bad_input(sandbox: Sandbox, http: aiohttp.ClientSession) -> None:
    cases = [
        ("/api/chat/web-a/messages", b"not json", 400),
        ("/api/chat/web-a/messages", json.dumps({"text": "  "}).encode(), 400),
        ("/api/chat/has%20space/messages", json.dumps({"text": "hi"}).encode(), 400),
        ("/bot", json.dumps({"text": "no recipient"}).encode(), 400),
        ("/_sim/conversations/nope/accept", b"{}", 404),
    ]
    for path, body, status in cases:
        async with http.post(f"{sandbox.url}{path}", data=body) as response:
            assert response.status == status, (path, await response.text())
            assert "error" in await response.json()


async def test_the_demo_bot_answers_the_bridge_as_rasa_does(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    """The bridge's own Rasa client against the demo bot: bot events, triggers, markers."""
    rasa = RasaClient(sandbox.bot_url)
    stream = ChatStream(http, f"{sandbox.url}/api/chat/web-r/events")
    try:
        version = await rasa.version()
        assert version["demo_bot"] is True and version["version"].startswith("3.6")
        await say(http, sandbox, "web-r", "hi")  # the channel (`latest`) is now callback

        await rasa.push_bot_message(SenderId("web-r"), "pushed text", marker="ev1:0")
        await stream.until(has("bot", "pushed text"), "the pushed bot event")
        assert await rasa.has_marker(SenderId("web-r"), "ev1:0")
        assert not await rasa.has_marker(SenderId("web-r"), "ev2:0")

        # A trigger runs the real action_handoff_notice through the bridge's /webhook.
        await rasa.trigger_intent(
            SenderId("web-r"), "EXTERNAL_agent_joined", {"agent": "Bo"}, marker="ev2:0"
        )
        await stream.until(has("notice", "You're now chatting with Bo."), "the joined notice")
        assert await rasa.has_marker(SenderId("web-r"), "ev2:0")
        assert sandbox.demo_bot is not None
        tracker = sandbox.demo_bot.tracker("web-r")
        assert tracker.slots["handoff_active"] is True and tracker.slots["handoff_agent"] == "Bo"
        names = [e.get("name") for e in tracker.events if e["event"] == "action"]
        assert names[-3:] == ["action_extract_slots", "action_handoff_notice", "action_listen"]

        with pytest.raises(RetryableUpstreamError) as refused:
            await rasa.trigger_intent(SenderId("web-r"), "EXTERNAL_nope", {}, marker="ev3:0")
        assert refused.value.status == 404
    finally:
        await stream.close()
        await rasa.close()


async def test_two_fallbacks_in_a_row_escalate(
    sandbox: Sandbox, http: aiohttp.ClientSession
) -> None:
    stream = ChatStream(http, f"{sandbox.url}/api/chat/web-f/events")
    await say(http, sandbox, "web-f", "asdfgh")
    await stream.until(has("bot", "Sorry, I can't help with that."), "the first fallback")
    assert sandbox.sim is not None and sandbox.sim.conversations == {}
    await say(http, sandbox, "web-f", "qwertz")
    await stream.until(has("notice", "Connecting you with a person"), "the escalation")
    assert len(sandbox.sim.conversations) == 1
    await stream.close()


@pytest.mark.parametrize("api", ["gateway", "chat-v2"])
async def test_the_whole_handoff_over_http(api: str, http: aiohttp.ClientSession) -> None:
    config = SandboxConfig(port=0, api=api)  # type: ignore[arg-type]
    async with running_sandbox(config, settings()) as sb:
        assert sb.sim is not None and sb.runtime is not None
        stream = ChatStream(http, f"{sb.url}/api/chat/web-h/events")
        await say(http, sb, "web-h", "hello")
        await stream.until(has("bot", "example assistant"), "the greeting")

        await say(http, sb, "web-h", "I want to talk to a human")
        await stream.until(has("notice", "Connecting you with a person"), "connecting")
        await stream.until(has("notice", "queue"), "queued")
        (cid, conv), *_ = sb.sim.conversations.items()
        assert [m.text for m in conv.history] == [
            "hello", sb.demo_bot.domain.render("utter_greet", {}) if sb.demo_bot else "",
            "I want to talk to a human",
        ]  # fmt: skip
        assert "web-h" in json.dumps(conv.customer)  # rasaSenderId

        await desk(http, sb, f"{cid}/accept", agentName="Anna")
        await eventually(lambda: len(joined(stream)) == 1, what="the join")
        await desk(http, sb, f"{cid}/say", text="Hello, Anna here")
        said = await stream.until(has("agent", "Hello, Anna here"), "the agent's words")
        assert said["agent"] == "Anna"

        bot_before = len(stream.texts("bot"))
        await say(http, sb, "web-h", "hi, my order is late")  # "hi" must not reach the bot
        await eventually(
            lambda: (
                [m.text for m in conv.messages if m.author_type == "user"]
                == ["hi, my order is late"]
            ),
            what="the user's words on the desk",
        )
        # The agent leaves; the bot is back. Then the user asks again: the same conversation
        # reopens, and this time the user ends the chat.
        await desk(http, sb, f"{cid}/leave")
        await stream.until(has("notice", "left the chat"), "the agent left")
        assert len(stream.texts("bot")) == bot_before  # the bot said nothing to the agent's chat
        await say(http, sb, "web-h", "agent please")
        await eventually(lambda: conv.state == "active", what="the reopened conversation")
        assert list(sb.sim.conversations) == [cid]  # reopened, not a new one
        await desk(http, sb, f"{cid}/accept", agentName="Anna")
        await eventually(lambda: len(joined(stream)) == 2, what="the second join")
        await say(http, sb, "web-h", "/end_handoff")
        await stream.until(has("notice", "Your chat with the agent has ended"), "ended")
        assert (await sb.runtime.service.handoff(SenderId("web-h"))).state is State.ENDED
        await eventually(lambda: conv.state == "idle", what="the user's leave on 8x8")
        await say(http, sb, "web-h", "thanks")
        await stream.until(has("bot", "You're welcome!"), "the bot again")
        await stream.close()


async def test_a_port_in_use_is_refused_with_a_reason() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SandboxError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with running_sandbox(SandboxConfig(port=port), settings()):
                pass
