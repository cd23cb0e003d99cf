"""The sandbox keeps working when BRIDGE_ACTION_TOKEN is set: its demo bot calls the actions
with the token, as Rasa's endpoints.yml makes Rasa do, and the bridge refuses calls without."""

from __future__ import annotations

import aiohttp

from bridge.sandbox import SandboxConfig, running_sandbox
from bridge.sandbox.bot_choice import BotChoice
from bridge.sandbox.command import banner
from bridge.settings import Settings
from tests.browser.test_sandbox_http import ChatStream, has, say

TOKEN = "sandbox-token-" + "x" * 20


async def test_the_sandbox_escalates_with_an_action_token() -> None:
    settings = Settings(_env_file=None, bridge_action_token=TOKEN)  # type: ignore[call-arg]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        running_sandbox(SandboxConfig(port=0), settings) as sb,
    ):
        stream = ChatStream(http, f"{sb.url}/api/chat/web-t/events")
        await say(http, sb, "web-t", "I want to talk to a human")
        await stream.until(has("notice", "Connecting you with a person"), "connecting")
        assert sb.sim is not None and len(sb.sim.conversations) == 1
        async with http.get(f"{sb.bridge_url}/actions") as r:
            assert r.status == 401
        await stream.close()


async def test_the_banner_tells_a_real_rasa_to_send_the_token() -> None:
    # A bot that is "Rasa" only by its URL: the banner is all this test reads.
    bot = BotChoice("http://127.0.0.1:9", "3.6.21")
    config = SandboxConfig(port=0, bot=bot)
    for token, note in ((TOKEN, "token: ${BRIDGE_ACTION_TOKEN}"), (None, None)):
        settings = Settings(_env_file=None, bridge_action_token=token)  # type: ignore[call-arg]
        async with running_sandbox(config, settings) as sb:
            line = next(x for x in banner(sb, bot) if "must call the actions" in x)
        assert (note in line) if note else ("token" not in line)
        assert TOKEN not in line
