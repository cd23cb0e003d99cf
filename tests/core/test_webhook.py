"""POST /8x8/events: what is accepted, what is refused, and that nothing gets a 500."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import zlib
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from bridge.eightbyeight.signature import b64url
from bridge.errors import StoreUnavailable
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import RedisStore
from bridge.store.base import Admitted, Begin, Enqueued, Store, admit_in_steps, partition_of
from bridge.store.keys import ENQUEUED_AFTER_DELIVERY_MS, MAX_CLAIM_TO_ENQUEUE_MS, claim_buckets
from bridge.web.webhook import _answer
from tests.core.conftest import BridgeFactory, Harness
from tests.support.crc_forge import forge
from tests.support.signing import signed_headers

TEXT = {"eventType": "TEXT", "messageType": "AGENT", "conversationId": "conv-1", "timestamp": 1,
        "agentId": "a1", "agentName": "Anna", "message": "hi"}  # fmt: skip


def _body(obj: Any = None) -> bytes:
    return json.dumps(TEXT if obj is None else obj, separators=(",", ":")).encode()


async def _post(h: Harness, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{h.url}/8x8/events", data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def _queued(h: Harness, conversation: str = "conv-1") -> int:
    partition = partition_of(conversation, h.store.partitions)
    entries = await h.store.read_events(partition, 100)
    held = await h.store.held_events(partition, conversation)  # type: ignore[arg-type]
    return len(entries) + len(held)


@pytest.fixture
async def h(make_bridge: BridgeFactory) -> Harness:
    harness = await make_bridge()
    await harness.runtime.relay.stop()  # look at what the door enqueued, undisturbed
    return harness


async def test_a_signed_event_is_accepted_and_enqueued_once(h: Harness) -> None:
    body = _body()
    headers = signed_headers(h.sim, body, event_id="evt-1")
    assert await _post(h, body, headers) == (200, {"result": "accepted"})
    assert await _post(h, body, signed_headers(h.sim, body, event_id="evt-1")) == (
        200,
        {"result": "duplicate"},
    )
    assert await _queued(h) == 1
    metrics = h.runtime.metrics
    assert metrics.webhook_responses.labels("200")._value.get() == 2
    assert metrics.events_received.labels("TEXT")._value.get() == 2
    assert metrics.events_duplicate._value.get() == 1


@pytest.mark.parametrize(
    ("status", "result", "extra"),
    [(200, "accepted", {}), (503, "cannot accept the event right now; retry", {}),
     (413, "body too large", {"limit": 65536}), (200, "ignored", {"kind": "typing"}),
     (400, "body has text that is not valid Unicode", {})],
)  # fmt: skip
def test_an_answer_is_what_json_response_would_send(
    status: int, result: str, extra: dict[str, Any]
) -> None:
    for _ in range(2):  # the second from the cache of encoded bodies
        ours, reference = (
            _answer(status, result, **extra),
            web.json_response({"result": result, **extra}, status=status),
        )
        assert (ours.status, ours.body, ours.content_type, ours.charset) == (
            reference.status, reference.body, reference.content_type, reference.charset,
        )  # fmt: skip
        assert ours.headers == reference.headers


async def test_unsigned_event_is_refused(h: Harness) -> None:
    status, _ = await _post(h, _body(), {"content-type": "application/json"})
    assert status == 401
    assert await _queued(h) == 0
    assert h.runtime.metrics.signature_failures._value.get() == 1


async def test_forged_signature_with_the_right_kid_is_refused(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = _body()
    status, answer = await _post(h, body, signed_headers(h.sim, body, key=forger, kid=h.sim.kid))
    assert (status, answer) == (401, {"result": "invalid signature"})
    assert _logged_reasons(caplog) == ["signature does not verify"]  # the log says why
    assert await _queued(h) == 0


def _logged_reasons(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        str(getattr(r, "reason", r.getMessage()))
        for r in caplog.records
        if r.levelno == logging.WARNING
        and r.name == "bridge.web.webhook"
        and r.getMessage() != "signature_key_unavailable"
    ]


async def _post_as_8x8_would(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: Any
) -> tuple[int, bytes]:
    """Post, retrying a 503 (here: a key lookup held back by the rate limit) as 8x8 does."""
    for _ in range(50):
        async with http.post(url, data=body, headers=headers) as r:
            answer = r.status, await r.read()
        if answer[0] != 503:
            return answer
        await asyncio.sleep(0.1)
    return answer


def _refusals(h: Harness) -> dict[str, tuple[bytes, list[tuple[str, str]]]]:
    """One request per way a signature check can fail."""
    body = _body()
    good = signed_headers(h.sim, body)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    hs256 = b64url(
        json.dumps({"b64": False, "crit": ["b64"], "kid": h.sim.kid, "alg": "HS256"}).encode()
    )
    stale = int((time.time() - 400) * 1000)
    other_tenant = signed_headers(h.sim, body)
    return {
        "no headers": (body, []),
        "no signature": (body, [(k, v) for k, v in good.items() if k != "x-8x8-signature"]),
        "not a JWS": (body, [*{**good, "x-8x8-signature": "abc"}.items()]),
        "not RS256": (body, [*{**good, "x-8x8-signature": f"{hs256}..c2ln"}.items()]),
        "unknown kid": (body, [*signed_headers(h.sim, body, key=forger, kid="nope").items()]),
        "forged": (body, [*signed_headers(h.sim, body, key=forger, kid=h.sim.kid).items()]),
        "stale": (body, [*signed_headers(h.sim, body, tt_ms=stale).items()]),
        "tampered": (_body({**TEXT, "message": "changed"}), [*good.items()]),
        "repeated header": (body, [("x-8x8-event-id", "other"), *good.items()]),
        "bad retry": (body, [*{**good, "x-8x8-retry": "1_0"}.items()]),
        "other tenant": (body, [*{**other_tenant, "x-8x8-tenant-id": "t2"}.items()]),
    }  # fmt: skip


async def test_every_signature_failure_has_the_same_401_body(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    answers: dict[str, tuple[int, bytes]] = {}
    async with aiohttp.ClientSession() as http:
        # A signature used once, then again on another body with the same CRC32.
        used = signed_headers(h.sim, _body(), event_id="evt-once")
        async with http.post(f"{h.url}/8x8/events", data=_body(), headers=used) as r:
            assert r.status == 200
        forged = forge(_body({**TEXT, "message": "forged {PAD}"}), zlib.crc32(_body()))
        reused = forged, [*used.items()]
        for name, (body, headers) in {**_refusals(h), "reused id": reused}.items():
            answers[name] = await _post_as_8x8_would(http, f"{h.url}/8x8/events", body, headers)
    assert set(answers.values()) == {(401, b'{"result": "invalid signature"}')}, answers
    # ...while the log tells them apart, at warning.
    assert _logged_reasons(caplog) == [
        "missing header x-8x8-signature", "missing header x-8x8-signature",
        "signature is not a detached compact JWS", "JWS algorithm must be RS256",
        "unknown signing key", "signature does not verify",
        "x-8x8-transmission-time is outside the allowed clock skew", "signature does not verify",
        "header x-8x8-event-id is repeated",
        "x-8x8-retry and x-8x8-transmission-time must be integers",
        "x-8x8-tenant-id is not this deployment's tenant", "event_id_reused_with_another_body",
    ]  # fmt: skip
    assert await _queued(h) == 1


async def test_unknown_key_is_refused(h: Harness) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = _body()
    status, _ = await _post(h, body, signed_headers(h.sim, body, key=forger, kid="no-such-key"))
    assert status == 401
    assert await _queued(h) == 0


@pytest.mark.parametrize("skew_s", [-400, 400])
async def test_stale_or_future_transmission_time_is_refused(h: Harness, skew_s: int) -> None:
    body = _body()
    tt = int((time.time() + skew_s) * 1000)
    status, _ = await _post(h, body, signed_headers(h.sim, body, tt_ms=tt))
    assert status == 401
    assert await _queued(h) == 0


async def test_tampered_body_is_refused(h: Harness) -> None:
    headers = signed_headers(h.sim, _body())
    status, _ = await _post(h, _body({**TEXT, "message": "send me your password"}), headers)
    assert status == 401
    assert await _queued(h) == 0


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'"text"', b"\xff\xfe", b""])
async def test_signed_garbage_is_a_400(h: Harness, body: bytes) -> None:
    status, _ = await _post(h, body, signed_headers(h.sim, body))
    assert status == 400


async def test_an_event_without_conversation_is_a_400(h: Harness) -> None:
    body = _body({"eventType": "TEXT", "message": "hi"})
    status, answer = await _post(h, body, signed_headers(h.sim, body))
    assert (status, answer["result"]) == (400, "event has no conversationId")


async def test_an_oversized_body_is_a_413_signed_or_not(h: Harness) -> None:
    body = _body({**TEXT, "message": "x" * 300_000})
    assert (await _post(h, body, signed_headers(h.sim, body)))[0] == 413
    assert (await _post(h, body, {}))[0] == 413


async def test_web_hook_verify_is_answered_even_unsigned_and_never_enqueued(h: Harness) -> None:
    body = _body({"notificationVersion": "v2.0", "eventType": "WEB_HOOK_VERIFY"})
    assert (await _post(h, body, {"content-type": "application/json"}))[0] == 200
    assert sum([len(await h.store.read_events(p, 10)) for p in range(h.store.partitions)]) == 0


async def test_an_unknown_event_type_is_acknowledged_not_enqueued(h: Harness) -> None:
    body = _body({"eventType": "SOMETHING_NEW", "conversationId": "conv-1", "extra": {"a": 1}})
    status, answer = await _post(h, body, signed_headers(h.sim, body))
    assert (status, answer["result"]) == (200, "ignored")
    assert await _queued(h) == 0


async def test_an_echo_of_our_own_message_is_not_relayed(h: Harness) -> None:
    body = _body({"eventType": "MESSAGE", "conversationId": "conv-1", "timestamp": 1,
                  "data": {"isEcho": True, "sender": {"type": "user"}, "text": "hello"}})  # fmt: skip
    assert (await _post(h, body, signed_headers(h.sim, body)))[1]["result"] == "ignored"
    assert await _queued(h) == 0


async def test_the_key_service_down_is_a_503_so_8x8_retries(h: Harness) -> None:
    h.sim.rotate_key()  # a kid the bridge has not cached yet
    h.sim.faults.fail_next("jwk", count=10, status=503)
    body = _body()
    status, _ = await _post(h, body, signed_headers(h.sim, body))
    assert status == 503
    assert await _queued(h) == 0


async def test_store_down_is_a_503_and_leaves_no_claim(make_bridge: BridgeFactory) -> None:
    from bridge.store import open_store

    h = await make_bridge()
    await h.runtime.relay.stop()
    healthy = h.runtime.door.store
    h.runtime.door.store = await open_store("redis://127.0.0.1:1", partitions=healthy.partitions)
    body = _body()
    status, _ = await _post(h, body, signed_headers(h.sim, body, event_id="evt-down"))
    assert status == 503
    async with aiohttp.ClientSession() as http, http.get(f"{h.url}/ready") as r:
        assert r.status == 200  # the runtime's own store is fine; only the door's was cut
    h.runtime.door.store = healthy
    assert await _post(h, body, signed_headers(h.sim, body, event_id="evt-down")) == (
        200,
        {"result": "accepted"},
    )


class FailsOnce:
    """The door's store, failing once around the enqueue: what a crash or a lost Redis
    connection between the claim and the enqueue (on a Cluster, where they are two steps), or
    just after the enqueue, leaves behind; or, on a single Redis (one step), the answer lost."""

    def __init__(self, store: Store, step: str) -> None:
        self._store, self._step = store, step

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def admit_event(self, *args: Any, **kwargs: Any) -> Admitted:
        if self._step == "lost-answer":
            admitted = await self._store.admit_event(*args, **kwargs)
            await self._fail_at("lost-answer")
            return admitted
        return await admit_in_steps(self, *args, **kwargs)  # type: ignore[arg-type]

    async def enqueue_event(self, *args: Any, **kwargs: Any) -> Enqueued | None:
        await self._fail_at("before")
        added = await self._store.enqueue_event(*args, **kwargs)
        await self._fail_at("after")
        return added

    async def _fail_at(self, step: str) -> None:
        if self._step == step:
            self._step = "done"
            raise StoreUnavailable("injected")


@pytest.mark.parametrize("step", ["before", "after", "lost-answer"])
async def test_a_failure_around_the_enqueue_loses_and_doubles_nothing(
    h: Harness, step: str
) -> None:
    healthy = h.runtime.door.store
    h.runtime.door.store = FailsOnce(healthy, step)  # type: ignore[assignment]
    body = _body()
    first = await _post(h, body, signed_headers(h.sim, body, event_id="evt-crash"))
    assert first[0] == 503  # no 2xx: 8x8 retries
    assert await _queued(h) == (0 if step == "before" else 1)
    # A forged body under the pending claim is refused.
    forged = forge(_body({**TEXT, "message": "forged {PAD}"}), zlib.crc32(body))
    assert (await _post(h, forged, signed_headers(h.sim, body, event_id="evt-crash")))[0] == 401
    retry = await _post(h, body, signed_headers(h.sim, body, event_id="evt-crash"))
    assert retry == (200, {"result": "accepted" if step == "before" else "duplicate"})
    assert await _queued(h) == 1
    assert await _post(h, body, signed_headers(h.sim, body, event_id="evt-crash")) == (
        200,
        {"result": "duplicate"},
    )
    assert await _queued(h) == 1


class Stalls:
    """The door's store, as seen by a request that stalled between its claim and its enqueue
    for longer than the store allows (keys.MAX_CLAIM_TO_ENQUEUE_MS): on a Cluster, where they
    are two steps."""

    def __init__(self, store: Store) -> None:
        self._store, self.stalled = store, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def admit_event(self, *args: Any, **kwargs: Any) -> Admitted:
        return await admit_in_steps(self, *args, **kwargs)  # type: ignore[arg-type]

    async def enqueue_event(
        self, *args: Any, claimed_ms: int | None = None, **kwargs: Any
    ) -> Enqueued | None:
        if self.stalled and claimed_ms is not None:
            self.stalled = False
            claimed_ms -= MAX_CLAIM_TO_ENQUEUE_MS + 1
        return await self._store.enqueue_event(*args, claimed_ms=claimed_ms, **kwargs)


async def test_a_request_that_stalled_after_its_claim_is_answered_503_and_its_retry_goes_in(
    h: Harness,
) -> None:
    h.runtime.door.store = Stalls(h.runtime.door.store)  # type: ignore[assignment]
    body = _body()
    assert (await _post(h, body, signed_headers(h.sim, body, event_id="evt-slow")))[0] == 503
    assert await _queued(h) == 0
    retry = await _post(h, body, signed_headers(h.sim, body, event_id="evt-slow"))
    assert retry == (200, {"result": "accepted"})
    assert await _queued(h) == 1


async def test_a_delivered_event_is_a_duplicate_whatever_is_left_of_its_marker(h: Harness) -> None:
    """A late copy of a delivered event is a duplicate. In two steps (a Cluster) the delivery's
    ack (as the relay makes it) settles the pending claim before it lets the enqueued marker go;
    in one (a single Redis) the claim was done with the append and there is no marker."""
    store = h.store
    assert isinstance(store, RedisStore)
    body = _body()
    headers = signed_headers(h.sim, body, event_id="evt-done")
    assert await _post(h, body, headers) == (200, {"result": "accepted"})
    partition = partition_of("conv-1", store.partitions)
    [entry] = await store.read_events(partition, 10)
    apart = store.line is None
    assert entry.claimed is apart
    assert await store.acquire_partition(partition, "relay", 10_000)
    claimed = entry.event_id if entry.claimed else None
    assert await store.ack_event(partition, entry.entry_id, "relay", claimed)
    marker = store.keys.enqueued(partition, entry.event_id)
    if apart:
        assert 0 < await store.redis.pttl(marker) <= ENQUEUED_AFTER_DELIVERY_MS
        await store.redis.delete(marker)  # as when it has lapsed
    else:
        assert not await store.redis.exists(marker)
    late = await _post(h, body, signed_headers(h.sim, body, event_id="evt-done"))
    assert late == (200, {"result": "duplicate"})
    assert await _queued(h) == 0


async def test_claims_are_kept_for_event_dedupe_ttl_s(make_bridge: BridgeFactory) -> None:
    """The setting reaches the store, which both the door's claim and the relay's settle read
    to find where a claim lives."""
    h = await make_bridge(event_dedupe_ttl_s=600)
    store = h.store
    assert isinstance(store, RedisStore) and store.event_dedupe_ttl_s == 600
    body = _body()
    before = int(time.time() * 1000)
    assert await _post(h, body, signed_headers(h.sim, body, event_id="evt-ttl")) == (
        200,
        {"result": "accepted"},
    )
    after = int(time.time() * 1000)
    lives = []
    for at in {claim_buckets(EventId("evt-ttl"), t, 600) for t in (before, after)}:
        key = store.keys.event_claims(at.shard, at.current)
        if await store.redis.exists(key):
            lives.append((at.current_end_ms + 600_000) - (after + await store.redis.pttl(key)))
    assert len(lives) == 1 and 0 <= lives[0] <= after - before + 1_000  # expires a TTL after


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
_event_like = st.fixed_dictionaries(
    {
        "eventType": st.sampled_from(
            ["TEXT", "QUEUED", "MESSAGE", "MEMBERS_CHANGED", "ACTIVITY", "X", "WEB_HOOK_VERIFY"]
        )
    },
    optional={
        "conversationId": _json,
        "data": _json,
        "timestamp": _json,
        "message": _json,
        "agentName": _json,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obj=_event_like | _json)
async def test_no_json_input_gets_a_500(h: Harness, obj: Any) -> None:
    body = json.dumps(obj).encode()
    status, _ = await _post(h, body, signed_headers(h.sim, body))
    assert status in (200, 400)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300), headers=st.dictionaries(
    st.sampled_from(["x-8x8-signature", "x-8x8-event-id", "x-8x8-retry", "x-8x8-tenant-id",
                     "x-8x8-transmission-time", "x-8x8-customer-id"]),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
))  # fmt: skip
async def test_no_bytes_or_headers_get_a_500(
    h: Harness, body: bytes, headers: dict[str, str]
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{h.url}/8x8/events", data=body, headers=headers) as r,
    ):
        assert r.status in (200, 400, 401, 413)


async def test_a_nesting_bomb_is_refused_not_a_500(h: Harness) -> None:
    body = b"[" * 5000 + b"]" * 5000
    assert (await _post(h, body, {}))[0] == 401  # unsigned: refused before anything else
    assert (await _post(h, body, signed_headers(h.sim, body)))[0] == 400


async def test_text_that_is_not_valid_unicode_is_a_400(h: Harness) -> None:
    body = b'{"eventType":"TEXT","conversationId":"conv-1","message":"broken \\ud83d emoji"}'
    status, answer = await _post(h, body, signed_headers(h.sim, body))
    assert (status, answer["result"]) == (400, "body has text that is not valid Unicode")


async def test_a_signed_header_with_bytes_that_are_not_utf8_is_a_401(h: Harness) -> None:
    body = _body()
    headers = signed_headers(h.sim, body)
    lines = [f"{k}: {v}".encode() for k, v in headers.items() if k != "x-8x8-event-id"]
    request = b"\r\n".join(
        [b"POST /8x8/events HTTP/1.1", b"Host: bridge", b"x-8x8-event-id: evt-\xff\xfe",
         *lines, b"Content-Length: %d" % len(body), b"Connection: close", b"", body]
    )  # fmt: skip
    url = URL(h.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(request)
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"401"


async def test_a_signature_on_an_unusable_body_cannot_carry_a_usable_one(h: Harness) -> None:
    """A 400 claims the event id too: its signature with a CRC-matching usable body is refused."""
    broken = b'{"eventType":"TEXT","conversationId":"conv-1","message":"lone \\ud83d"}'
    headers = signed_headers(h.sim, broken, event_id="evt-broken")
    assert (await _post(h, broken, headers))[0] == 400
    assert (await _post(h, broken, signed_headers(h.sim, broken, event_id="evt-broken")))[0] == 400
    forged = forge(_body({**TEXT, "message": "forged {PAD}"}), zlib.crc32(broken))
    assert (await _post(h, forged, headers))[0] == 401
    assert await _queued(h) == 0


async def test_an_event_for_a_partition_another_process_consumes_rings_its_doorbell(
    h: Harness,
) -> None:
    """This process's relay is stopped (it owns no partition): the enqueue rings the bell."""
    store = h.store
    assert isinstance(store, RedisStore)
    up = asyncio.Event()
    bells: asyncio.Queue[int] = asyncio.Queue()

    async def listen() -> None:
        async for partition in store.bells(up.set):
            bells.put_nowait(partition)

    listener = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(up.wait(), 10)
        body = _body()
        assert await _post(h, body, signed_headers(h.sim, body)) == (200, {"result": "accepted"})
        assert await asyncio.wait_for(bells.get(), 10) == partition_of("conv-1", store.partitions)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def test_a_plan_the_door_does_not_hand_is_given_back(h: Harness) -> None:
    """The relay's first step planned for an event (`Relay.plan`) goes back to the relay on
    every path that does not hand the entry over (a duplicate, a reused signature, a store
    down), so that its consumer may plan again; a handed plan is the hand's."""
    planned = Begin("nobody", ConversationId("conv-1"), "d", 0, SenderId("s"))
    door = h.runtime.door
    door.plan = lambda *_: planned
    given_back: list[Begin | None] = []
    door.unplan = given_back.append
    body = _body()
    headers = signed_headers(h.sim, body, event_id="evt-plan")
    assert await _post(h, body, headers) == (200, {"result": "accepted"})
    assert given_back == []
    assert await _post(h, body, headers) == (200, {"result": "duplicate"})
    forged = forge(_body({**TEXT, "message": "forged {PAD}"}), zlib.crc32(body))
    assert (await _post(h, forged, signed_headers(h.sim, body, event_id="evt-plan")))[0] == 401
    door.store = FailsOnce(door.store, "lost-answer")  # type: ignore[assignment]
    other = _body({**TEXT, "message": "another"})
    assert (await _post(h, other, signed_headers(h.sim, other, event_id="evt-2")))[0] == 503
    assert given_back == [planned, planned, planned]
