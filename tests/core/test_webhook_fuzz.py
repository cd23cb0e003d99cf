"""Property-based fuzzing of POST /8x8/events through the real verifier: signed events (the
simulator's key) with non-finite and huge numbers, deep nesting, wrong types at every level,
lone surrogates, invalid UTF-8 and BOMs. Never a 5xx, and nothing valid is lost.

500 cases by default; HYPOTHESIS_PROFILE=full runs 10,000.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.store.base import partition_of
from tests.core.conftest import BridgeFactory, Harness
from tests.support.signing import signed_headers

FULL = os.environ.get("HYPOTHESIS_PROFILE") == "full"
CASES = 10_000 if FULL else 500


@dataclass(frozen=True)
class Raw:
    """A JSON fragment, written as is (so it can be what `json.dumps` would never write)."""

    text: bytes


def _render(node: Any) -> bytes:
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, list):
        return b"[" + b",".join(_render(n) for n in node) + b"]"
    if isinstance(node, dict):
        return b"{" + b",".join(_string(k) + b":" + _render(v) for k, v in node.items()) + b"}"
    return json.dumps(node).encode()  # floats included: nan and inf become NaN and Infinity


def _string(text: str) -> bytes:
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass")


_ODD_NUMBERS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"-0", b"0.0"]
_LONE_SURROGATES = [b'"\\ud800"', b'"x\\udfffy"', b'"\\ud83d\\u0041"', b'"\\udbff"']

_leaf = st.one_of(
    st.sampled_from(_ODD_NUMBERS).map(Raw),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.integers(min_value=19, max_value=5000).map(lambda n: Raw(b"9" * n)),  # huge ints
    st.floats(),
    st.none(),
    st.booleans(),
    st.text(max_size=12),
    st.sampled_from(_LONE_SURROGATES).map(Raw),
    # Raw bytes in a string: invalid UTF-8, control characters.
    st.binary(min_size=1, max_size=6).map(
        lambda b: Raw(b'"' + b.replace(b'"', b"").replace(b"\\", b"") + b'"')
    ),
    st.integers(min_value=1, max_value=3000).map(lambda d: Raw(b"[" * d + b"]" * d)),  # nesting
)
_junk = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _either(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The right type most of the time, anything at all otherwise."""
    return st.one_of(good, good, _junk)


_ids = st.from_regex(r"[A-Za-z0-9_-]{1,24}", fullmatch=True)
_sender = st.fixed_dictionaries(
    {}, optional={"type": _either(st.sampled_from(["agent", "user", "bot"])), "name": _either(st.text()),
                  "id": _either(_ids)},
)  # fmt: skip
_data = st.fixed_dictionaries(
    {},
    optional={
        "sender": _either(_sender), "text": _either(st.text()), "isEcho": _either(st.booleans()),
        "attachments": _either(st.lists(st.fixed_dictionaries({}, optional={"url": _junk, "fileName": _junk}), max_size=2)),
        "name": _either(st.just("typing")), "value": _either(st.fixed_dictionaries({"users": _junk})),
        "memberType": _either(st.sampled_from(["agent", "user"])),
        "change": _either(st.sampled_from(["joined", "left"])), "id": _junk, "state": _junk,
    },
)  # fmt: skip
_event = st.fixed_dictionaries(
    {
        "eventType": _either(st.sampled_from(
            ["TEXT", "TEXT", "QUEUED", "AGENT_JOINED", "AGENT_LEFT", "TRANSFER", "MESSAGE",
             "MEMBERS_CHANGED", "ACTIVITY", "CONVERSATION_UPDATE", "SOMETHING_NEW"])),
        "conversationId": _either(_ids),
    },
    optional={
        "timestamp": _either(st.integers(min_value=0, max_value=2**41)), "message": _either(st.text()),
        "agentId": _either(_ids), "agentName": _either(st.text()), "queueId": _junk,
        "queueName": _junk, "messageType": _junk, "data": _either(_data),
    },
)  # fmt: skip
_bodies = st.builds(
    lambda prefix, node: prefix + _render(node),
    st.sampled_from([b"", b"", b"\xef\xbb\xbf", b"\xff\xfe", b" "]),  # BOMs, a stray one
    st.one_of(_event, _event, _event, _junk),
)


def _must_accept(body: bytes) -> bool:
    """A v2 TEXT event with a usable conversation id and valid Unicode text: an agent's message
    that must reach the user, whatever else the body holds."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(obj, dict) or obj.get("eventType") != "TEXT":
        return False
    cid = obj.get("conversationId")
    texts = [obj.get(k) for k in ("conversationId", "message", "agentId", "agentName")]
    return isinstance(cid, str) and cid != "" and all(_utf8(t) for t in texts if isinstance(t, str))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@pytest.fixture
async def h(make_bridge: BridgeFactory) -> Harness:
    harness = await make_bridge()
    await harness.runtime.relay.stop()  # keep what the door enqueued where we can see it
    return harness


@pytest.mark.parametrize("api", ["gateway"])  # the door does not depend on the API family
@pytest.mark.timeout(3600 if FULL else 300)
@settings(
    max_examples=CASES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_bodies)
async def test_no_signed_body_gets_a_5xx_and_nothing_valid_is_lost(
    h: Harness, api: str, body: bytes
) -> None:
    event_id = secrets.token_urlsafe(12)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{h.url}/8x8/events", data=body, headers=signed_headers(h.sim, body, event_id=event_id)
        ) as r,
    ):
        status, answer = r.status, await r.json()
    assert status < 500, (status, answer)
    if _must_accept(body):
        assert (status, answer["result"]) == (200, "accepted"), answer
    if answer.get("result") == "accepted":
        # Accepted means appended: the partition's last entry (examples run one at a time).
        cid = str(json.loads(body)["conversationId"])
        stream = h.store.keys.stream(partition_of(cid, h.store.partitions))  # type: ignore[attr-defined]
        [(_id, fields)] = await h.store.redis.xrevrange(stream, count=1)  # type: ignore[attr-defined]
        assert {_str(k): _str(v) for k, v in fields.items()}["eid"] == event_id


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
