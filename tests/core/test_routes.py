"""The other doors of `serve`: health, readiness, metrics, and the Rasa action endpoint."""

from __future__ import annotations

import json
import zlib
from typing import Any

import aiohttp

from bridge.store import open_store
from tests.core.conftest import BridgeFactory, Harness
from tests.support.waiting import eventually


async def _get(h: Harness, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"{h.url}{path}") as r:
        return r.status, await r.text()


def _action_call(action: str, sender: str = "zed", text: str = "I want a human") -> dict[str, Any]:
    latest = {
        "text": text,
        "intent": {"name": "human_handoff", "confidence": 1.0},
        "entities": [],
        "metadata": {},
    }
    return {
        "next_action": action,
        "sender_id": sender,
        "version": "3.6.21",
        "tracker": {
            "sender_id": sender, "slots": {"handoff_active": False}, "latest_message": latest,
            "events": [{"event": "user", "text": text, "parse_data": latest}], "paused": False,
            "followup_action": None, "active_loop": {}, "latest_action_name": "action_listen",
        },
        "domain": {},
    }  # fmt: skip


async def test_health_is_always_ok(make_bridge: BridgeFactory) -> None:
    h = await make_bridge()
    assert await _get(h, "/health") == (200, json.dumps({"status": "ok"}))


async def test_ready_follows_the_store(make_bridge: BridgeFactory) -> None:
    h = await make_bridge()
    assert (await _get(h, "/ready"))[0] == 200
    healthy = h.runtime.store
    down = await open_store("redis://:hunter2@127.0.0.1:1")
    h.runtime.store = down
    status, body = await _get(h, "/ready")
    # Which dependency is down, never its address, credentials or error text (issue 8).
    assert status == 503 and json.loads(body) == {"status": "unavailable", "reason": "store"}
    h.runtime.store = healthy
    await down.close()


async def test_metrics_count_what_happened_and_carry_no_secrets(make_bridge: BridgeFactory) -> None:
    h = await make_bridge()
    cid = await h.escalate("ada")
    await h.sim.desk.accept(cid, agent_name="Anna")
    await h.sim.desk.say(cid, "top secret order 42")
    await eventually(lambda: h.rasa.texts("ada") == ["top secret order 42"], what="relay")
    status, text = await _get(h, "/metrics")
    assert status == 200
    assert 'handoff_relay_deliveries_total{kind="message"} 1.0' in text
    assert "handoff_relay_lag_seconds_count" in text
    assert "handoff_events_received_total" in text
    for secret in ("top secret", h.sim.config.api_key, h.sim.config.api_secret):
        assert secret not in text


async def test_the_action_endpoint_speaks_the_rasa_sdk_protocol(make_bridge: BridgeFactory) -> None:
    h = await make_bridge()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{h.url}/actions") as r:
            names = {a["name"] for a in await r.json()}
        assert {"action_handoff_to_agent", "action_handoff_forward", "action_handoff_end"} <= names
        async with http.post(f"{h.url}/webhook", json=_action_call("action_handoff_to_agent")) as r:
            assert r.status == 200
            body = await r.json()
        assert {
            "event": "slot",
            "name": "handoff_active",
            "value": True,
            "timestamp": None,
        } in body["events"]
        assert [m["response"] for m in body["responses"]] == ["utter_handoff_connecting"]
        compressed = zlib.compress(
            json.dumps(_action_call("action_handoff_notice", "yan")).encode()
        )
        async with http.post(f"{h.url}/webhook", data=compressed,
                             headers={"Content-Encoding": "deflate", "Content-Type": "application/json"}) as r:  # fmt: skip
            assert r.status == 200
        async with http.post(f"{h.url}/webhook", json=_action_call("action_nope")) as r:
            assert r.status == 404 and (await r.json())["action_name"] == "action_nope"
        for bad in (b"nope", b"[]", json.dumps({"next_action": "x"}).encode()):
            async with http.post(f"{h.url}/webhook", data=bad) as r:
                assert r.status == 400
    assert len(h.sim.conversations) == 1


async def test_logs_at_info_carry_ids_but_no_message_text_or_secrets(
    make_bridge: BridgeFactory,
) -> None:
    import io
    import logging

    from bridge.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.INFO)
    # The bridge's own loggers; the simulator and the Rasa stand-in play the other parties.
    handler.addFilter(lambda record: not record.name.startswith("bridge.simulator"))
    root = logging.getLogger("bridge")
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        h = await make_bridge(rasa_token="rasa-token-55e1")
        h.rasa.token = "rasa-token-55e1"
        async with aiohttp.ClientSession() as http:
            call = _action_call(
                "action_handoff_to_agent", "lia", "please a human, my card 4111 is lost"
            )
            async with http.post(f"{h.url}/webhook", json=call) as r:
                assert r.status == 200
        cid = (await h.runtime.service.handoff("lia")).conversation_id  # type: ignore[arg-type]
        assert cid is not None
        await h.sim.desk.accept(cid, agent_name="Anna")
        await h.sim.desk.say(cid, "your PIN is 9876")
        await eventually(lambda: h.rasa.texts("lia") == ["your PIN is 9876"], what="relay")
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    logged = stream.getvalue()
    assert "relay_processed" in logged and "escalated" in logged
    assert "event_accepted" not in logged  # one INFO line per event: the relay's, not the door's
    assert cid in logged  # ids are there, for tracing
    from bridge.logs import mask_sender

    assert '"lia"' not in logged and mask_sender("lia") in logged  # the sender, masked
    assert '"event": "handoff_state"' in logged  # one line per state change
    for secret in ("4111", "9876", "key-7f3a9e", "secret-9c2b4d", "rasa-token-55e1", "Bearer"):
        assert secret not in logged, secret
