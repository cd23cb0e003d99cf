"""POST /webhook answers every input with a 2xx or a clear 4xx, never a 5xx (issue 8, item 4).

Property-based: a well-formed rasa-sdk call (the shape Rasa 3.6 sends) with one part replaced
(any level: the call, tracker, slots, latest_message, events, parse_data, domain, sender ids)
by a value of the wrong type, a non-finite or huge number, 1,000-deep nesting, a lone
surrogate; or the whole body replaced by bytes that are not UTF-8, not JSON, or compressed
wrongly. The bulk runs against the app in this process (the simulator as 8x8, the embedded
store); a sample of the same cases then runs against a real `serve`.

    HYPOTHESIS_PROFILE=full pytest tests/core/test_action_fuzz.py    # 10,000 cases (CI: 400)
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import os
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.settings import Settings
from bridge.simulator import Simulator, SimulatorConfig
from bridge.store import open_store
from bridge.web.app import create_app
from bridge.web.limits import server_options
from bridge.web.runtime import build_runtime
from tests.support.serve_proc import ServeProc, base_env

FULL = os.environ.get("HYPOTHESIS_PROFILE") == "full"
CASES = 10_000 if FULL else 400
ACTIONS = ["action_handoff_to_agent", "action_handoff_forward", "action_handoff_end",
           "action_handoff_notice"]  # fmt: skip
# Answers a client can act on: done, bad call, unknown action, send the domain, too large.
CLEAR = {200, 400, 404, 413, 449}
MARK = "\x00MUTATION\x00"


def call_template(action: str, sender: str) -> dict[str, Any]:
    """A call as Rasa 3.6.21 sends it (rasa/core/actions/action.py, RemoteAction._action_call_format)."""
    latest = {
        "text": "I want a human",
        "intent": {"name": "human_handoff", "confidence": 0.97},
        "entities": [{"entity": "queue", "value": "billing", "start": 0, "end": 1}],
        "intent_ranking": [{"name": "human_handoff", "confidence": 0.97}],
        "message_id": "m1",
        "metadata": {"name": "Ada", "email": "ada@example.com"},
    }
    events = [
        {"event": "action", "timestamp": 1700000000.1, "name": "action_session_start"},
        {"event": "session_started", "timestamp": 1700000000.2},
        {
            "event": "slot",
            "timestamp": 1700000000.3,
            "name": "session_started_metadata",
            "value": {"name": "Ada"},
        },
        {
            "event": "user",
            "timestamp": 1700000001.0,
            "text": "I want a human",
            "parse_data": latest,
            "input_channel": "rest",
            "message_id": "m1",
            "metadata": {},
        },
        {
            "event": "bot",
            "timestamp": 1700000001.5,
            "text": "Let me check",
            "data": {},
            "metadata": {"utter_action": "utter_x"},
        },
        {
            "event": "action",
            "timestamp": 1700000002.0,
            "name": "action_listen",
            "policy": "RulePolicy",
            "confidence": 1.0,
        },
    ]
    return {
        "next_action": action, "sender_id": sender, "version": "3.6.21",
        "tracker": {
            "sender_id": sender, "conversation_id": sender,
            "slots": {"handoff_active": False, "name": "Ada", "email": None,
                      "session_started_metadata": {"name": "Ada"}},
            "latest_message": latest, "latest_event_time": 1700000002.0,
            "followup_action": None, "paused": False, "events": events,
            "latest_input_channel": "rest", "active_loop": {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
        "domain": {"version": "3.1", "intents": ["human_handoff"], "slots": {},
                   "responses": {"utter_handoff_connecting": [{"text": "Connecting"}]},
                   "actions": list(ACTIONS)},
    }  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


PATHS = list(_paths(call_template(ACTIONS[0], "x")))[1:]

# Values JSON can carry, including text with lone surrogates (json.dumps escapes them).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
# Raw JSON text Python's json.dumps would never write.
raw_values = st.sampled_from([
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 5000, '"\\ud800"',
    '"a\\udfffb"', '{"\\ud83d": 1}', "[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000,
    "[" * 101 + "]" * 101, "[" * 99 + "]" * 99, '"' + "x" * 10000 + '"',
])  # fmt: skip


@dataclass(frozen=True)
class Case:
    body: bytes
    headers: dict[str, str]


@st.composite
def mutated_calls(draw: st.DrawFn) -> Case:
    call = call_template(draw(st.sampled_from(ACTIONS)), draw(st.sampled_from(["ada", "bo"])))
    path = draw(st.sampled_from(PATHS))
    parent = call
    for key in path[:-1]:
        parent = parent[key]
    how = draw(st.sampled_from(["replace", "raw", "delete", "add"]))
    raw = None
    if how == "delete":
        del parent[path[-1]]
    elif how == "add" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["domain_digest", "extra", "active_form", "stack"]))] = draw(
            json_values
        )
    elif how == "raw":
        parent[path[-1]] = MARK
        raw = draw(raw_values)
    else:
        parent[path[-1]] = draw(json_values)
    text = json.dumps(call, allow_nan=True)
    if raw is not None:
        text = text.replace(json.dumps(MARK), raw)
    return Case(text.encode("utf-8"), {"Content-Type": "application/json"})


@st.composite
def broken_bodies(draw: st.DrawFn) -> Case:
    good = json.dumps(call_template("action_handoff_notice", "ada")).encode()
    kind = draw(st.sampled_from(["bytes", "truncated", "latin1", "utf16", "deflate", "gzip"]))
    headers = {"Content-Type": "application/json"}
    if kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "truncated":
        body = good[: draw(st.integers(0, len(good) - 1))]
    elif kind == "latin1":
        body = good.replace(b"I want", "Ich m\u00f6chte".encode("latin-1"))
    elif kind == "utf16":
        body = json.dumps(call_template("action_handoff_notice", "ada")).encode("utf-16")
    else:
        packed = zlib.compress(good) if kind == "deflate" else zlib.compress(good, wbits=31)
        cut = draw(st.integers(0, len(packed)))
        body = packed[:cut] + draw(st.binary(max_size=8))
        headers["Content-Encoding"] = kind
    return Case(body, headers)


cases = st.one_of(mutated_calls(), mutated_calls(), broken_bodies())


class BackgroundBridge:
    """The serve app and the simulator on an event loop of their own, so that hypothesis's
    synchronous test body can call them over real HTTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0

    def run(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=60)

    async def _start(self) -> None:
        self.sim = Simulator(SimulatorConfig(api_key="k-fuzz", api_secret="s-fuzz"))
        await self.sim.start("127.0.0.1", 0)
        cfg = self.sim.config
        s = Settings(  # type: ignore[call-arg]
            eightbyeight_base_url=self.sim.base_url, eightbyeight_api_key=cfg.api_key,
            eightbyeight_channel_id=cfg.channel_id, rasa_url="http://127.0.0.1:9",
        )  # fmt: skip
        store = await open_store(None, partitions=s.relay_partitions)
        runtime = await build_runtime(s, store=store)
        self.runner = web.AppRunner(
            create_app(runtime, run_relay=False), **server_options(s.bridge_client_timeout_s)
        )
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site.port

    async def _stop(self) -> None:
        await self.runner.cleanup()
        await self.sim.stop()

    def __enter__(self) -> BackgroundBridge:
        self._thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def bridge() -> Iterator[BackgroundBridge]:
    with BackgroundBridge() as running:
        yield running


def post(port: int, case: Case) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/webhook", body=case.body, headers=case.headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def check(status: int, answer: Any) -> None:
    assert status in CLEAR, (status, answer)
    if status >= 400:
        assert isinstance(answer, dict) and (answer.get("error") or answer.get("result")), answer


@settings(
    max_examples=CASES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)  # fmt: skip
@given(case=cases)
def test_no_input_gets_a_5xx(bridge: BackgroundBridge, case: Case) -> None:
    check(*post(bridge.port, case))


def test_the_named_cases_of_issue_8_get_a_clear_400(bridge: BackgroundBridge) -> None:
    good = call_template("action_handoff_notice", "ada")

    def with_(path: tuple[Any, ...], raw: str) -> Case:
        call = copy.deepcopy(good)
        parent = call
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = MARK
        return Case(json.dumps(call).replace(json.dumps(MARK), raw).encode(), {})

    named = {
        "1,000-deep nesting": with_(("tracker", "slots", "name"), "[" * 1000 + "]" * 1000),
        "tracker not an object": with_(("tracker",), "[]"),
        "slots not an object": with_(("tracker", "slots"), '"x"'),
        "events not a list": with_(("tracker", "events"), "5"),
        "an event not an object": with_(("tracker", "events", 0), "null"),
        "lone-surrogate sender_id": with_(("tracker", "sender_id"), '"\\ud800"'),
        "NaN timestamp": with_(("tracker", "events", 0, "timestamp"), "NaN"),
        "1e400": with_(("tracker", "latest_event_time"), "1e400"),
        "domain not an object": with_(("domain",), "[1]"),
        "confidence not a number": with_(("tracker", "latest_message", "intent", "confidence"), '"high"'),
        "session metadata not an object": with_(("tracker", "slots", "session_started_metadata"), "[1]"),
        "not UTF-8": Case(b'{"next_action": "\xff"}', {}),
    }  # fmt: skip
    for name, case in named.items():
        status, answer = post(bridge.port, case)
        assert status == 400, (name, answer)
        assert answer["error"].startswith("Invalid body request: "), (name, answer)


def test_a_sample_against_a_real_serve(tmp_path: Path) -> None:
    serve = ServeProc(base_env(), tmp_path / "serve.log")
    asyncio.run(serve.start())
    try:
        samples: list[Case] = []

        @settings(max_examples=60, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
        @given(case=cases)
        def run(case: Case) -> None:
            samples.append(case)
            check(*post(serve.port, case))

        run()
        assert len(samples) == 60
    finally:
        serve.stop()
    assert "unhandled_error" not in serve.log_path.read_text()
