"""The stock rasa-sdk server serves the same actions, in the bridge's environment."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.support.sdk_server import stop_group

ROOT = Path(__file__).resolve().parents[2]
_PREFIXES = ("EIGHTBYEIGHT_", "REDIS_", "RASA_", "HANDOFF_")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PREFIXES)}
    return {**env, "EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_CHANNEL_ID": "c", **extra}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_without_redis_url_the_actions_refuse_to_load(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "-p", str(_port())],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert "REDIS_URL" in result.stdout + result.stderr


async def test_with_redis_url_python_m_rasa_sdk_serves_the_handoff_actions(
    real_redis_url: str, key_prefix: str
) -> None:
    port = _port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a start, not a wait
        [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "-p", str(port)],
        cwd=ROOT, env=_env(REDIS_URL=real_redis_url, REDIS_KEY_PREFIX=key_prefix),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        names: set[str] = set()
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/actions") as r:
                        names = {a["name"] for a in await r.json()}
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            assert {"action_handoff_to_agent", "action_handoff_forward", "action_handoff_end",
                    "action_handoff_notice"} <= names  # fmt: skip
            call = {
                "next_action": "action_handoff_notice", "sender_id": "s1", "version": "3.6.21",
                "tracker": {"sender_id": "s1", "slots": {}, "events": [], "paused": False, "followup_action": None,
                            "active_loop": {}, "latest_action_name": "action_listen",
                            "latest_message": {"text": "EXTERNAL: EXTERNAL_agent_left",
                                               "intent": {"name": "EXTERNAL_agent_left"}, "entities": []}},
                "domain": {},
            }  # fmt: skip
            async with http.post(f"http://127.0.0.1:{port}/webhook", json=call) as r:
                assert r.status == 200
                body = await r.json()
        assert [m["response"] for m in body["responses"]] == ["utter_handoff_agent_left"]
    finally:
        stop_group(proc)
