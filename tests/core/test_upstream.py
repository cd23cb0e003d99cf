"""BRIDGE_ACTION_UPSTREAM: the bot's own rasa-sdk server keeps answering its actions through
the bridge, exactly as it would answer Rasa itself."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.core.conftest import BridgeFactory
from tests.support.sdk_server import running_sdk_server


@pytest.fixture(scope="module")
def sdk_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_sdk_server(tmp_path_factory.mktemp("shop-bot")) as url:
        yield url


def _call(action: str, sender: str = "ord-1") -> dict[str, Any]:
    return {
        "next_action": action, "sender_id": sender, "version": "3.6.21", "domain": {},
        "tracker": {"sender_id": sender, "slots": {"handoff_active": False}, "events": [],
                    "latest_message": {"text": "hi", "intent": {"name": "greet"}, "entities": []},
                    "paused": False, "followup_action": None, "active_loop": {},
                    "latest_action_name": "action_listen"},
    }  # fmt: skip


async def _post(url: str, body: dict[str, Any]) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as http, http.post(url, json=body) as r:
        return r.status, await r.read(), r.headers.get("Content-Type", "")


@pytest.mark.parametrize("action", ["action_order_status", "action_refuse", "action_nope"])
async def test_an_action_the_bridge_does_not_own_gets_the_upstreams_own_answer(
    make_bridge: BridgeFactory, sdk_url: str, action: str
) -> None:
    h = await make_bridge(bridge_action_upstream=sdk_url)
    direct = await _post(sdk_url, _call(action))
    via_bridge = await _post(f"{h.url}/webhook", _call(action))
    assert via_bridge == direct
    assert (
        direct[0] == {"action_order_status": 200, "action_refuse": 400, "action_nope": 404}[action]
    )


async def test_the_bridges_own_actions_stay_with_the_bridge(
    make_bridge: BridgeFactory, sdk_url: str
) -> None:
    h = await make_bridge(bridge_action_upstream=sdk_url)
    status, body, _ = await _post(f"{h.url}/webhook", _call("action_handoff_notice"))
    assert status == 200 and b"responses" in body
    async with aiohttp.ClientSession() as http, http.get(f"{h.url}/actions") as r:
        names = [a["name"] for a in await r.json()]
    assert {"action_handoff_to_agent", "action_order_status", "action_refuse"} <= set(names)
    assert len(names) == len(set(names))


async def test_without_an_upstream_an_unknown_action_is_the_bridges_404(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    status, body, _ = await _post(f"{h.url}/webhook", _call("action_order_status"))
    assert status == 404 and b"action_order_status" in body


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/webhook"


async def test_an_unreachable_upstream_is_a_502_and_a_slow_one_a_504(
    make_bridge: BridgeFactory, sdk_url: str, tmp_path: Path
) -> None:
    down = await make_bridge(bridge_action_upstream=_closed_port_url())
    status, body, _ = await _post(f"{down.url}/webhook", _call("action_order_status"))
    assert status == 502 and b"action_order_status" in body
    async with aiohttp.ClientSession() as http, http.get(f"{down.url}/actions") as r:
        assert r.status == 200  # the bridge's own list, still
    slow = await make_bridge(bridge_action_upstream=sdk_url, bridge_action_upstream_timeout_s=0.3)
    status, body, _ = await _post(f"{slow.url}/webhook", _call("action_slow"))
    assert status == 504 and b"action_slow" in body
