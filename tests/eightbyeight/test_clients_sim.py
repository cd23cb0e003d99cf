"""Both clients against the 8x8 simulator over real HTTP on loopback.

Every test runs once per API family (`gateway`, `chat-v2`) unless it is about one family's
mechanism (v2's token, the gateway's key fallback).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr

from bridge.eightbyeight import EightByEightConfig, make_client
from bridge.eightbyeight.client import ChatClient, Customer, HistoryMessage
from bridge.eightbyeight.config import ApiFamily
from bridge.eightbyeight.signature import parse_jws
from bridge.eightbyeight.verify import WebhookVerifier
from bridge.eightbyeight.wire import epoch_ms
from bridge.errors import AuthError, NotFound, RequestNotSent, RetryableUpstreamError
from bridge.ids import ConversationId
from bridge.simulator import SimulatorConfig, running_simulator
from tests.support.waiting import eventually

CUSTOMER = Customer(
    name="Ada Lovelace",
    email="ada@example.com",
    user_id="u-42",
    phone="+441234",
    company="Analytical",
    case_id="case-7",
    language="en",
    extra=(("plan", "gold"), ("intent", "billing")),
)
EXPECTED_CUSTOMER: dict[ApiFamily, dict[str, Any]] = {
    "gateway": {
        "name": "Ada Lovelace",
        "userId": "u-42",
        "email": "ada@example.com",
        "phone": "+441234",
        "company": "Analytical",
        "caseId": "case-7",
        "language": "en",
        "additionalProperties": [
            {"key": "plan", "value": "gold"},
            {"key": "intent", "value": "billing"},
        ],
    },
    "chat-v2": {
        "name": "Ada Lovelace",
        "customerId": "u-42",
        "email": "ada@example.com",
        "phone": "+441234",
        "company": "Analytical",
        "caseId": "case-7",
        "language": "en",
        "plan": "gold",
        "intent": "billing",
    },
}


# --- a webhook receiver: where the simulator's signed events land ---


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


class Receiver:
    def __init__(self) -> None:
        self.events: list[Received] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(Received(await request.read(), dict(request.headers)))
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/8x8/events", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}/8x8/events"
    yield rec
    await runner.cleanup()


# --- simulator and clients ---


@pytest.fixture(params=["gateway", "chat-v2"])
def api(request: pytest.FixtureRequest) -> ApiFamily:
    value: ApiFamily = request.param
    return value


def sim_config(api: ApiFamily, receiver: Receiver, **changes: Any) -> SimulatorConfig:
    base = SimulatorConfig(
        api_key="k",
        api_secret="s",
        tenant_id="t1",
        customer_id="c1",
        channel_id="ch1",
        queue_id="101",
        webhook_url=receiver.url,
        api=api,
        token_ttl_s=1799,
    )
    return replace(base, **changes)


@pytest.fixture
async def sim(api: ApiFamily, receiver: Receiver) -> AsyncIterator[Any]:
    async with running_simulator(sim_config(api, receiver), host="127.0.0.1", port=0) as s:
        yield s


def client_config(api: ApiFamily, base_url: str, **changes: Any) -> EightByEightConfig:
    base = EightByEightConfig(
        api=api,
        base_url=base_url,
        api_key=SecretStr("k"),
        api_secret=SecretStr("s"),
        channel_id="ch1",
        tenant_id="t1",
        request_timeout_s=2.0,
        total_budget_s=6.0,
        max_attempts=4,
    )
    return replace(base, **changes)


@pytest.fixture
async def make(api: ApiFamily, sim: Any) -> AsyncIterator[Callable[..., ChatClient]]:
    """Builds clients for the running simulator (closed after the test)."""
    made: list[ChatClient] = []

    def build(**changes: Any) -> ChatClient:
        client = make_client(client_config(api, sim.base_url, **changes))
        made.append(client)
        return client

    yield build
    for client in made:
        await client.close()


@pytest.fixture
def client(make: Callable[..., ChatClient]) -> ChatClient:
    return make()


# --- helpers over the simulator's request log ---


def calls(sim: Any, method: str, suffix: str) -> list[Any]:
    return [r for r in sim.requests if r.method == method and r.path.endswith(suffix)]


def statuses(sim: Any, method: str, suffix: str) -> list[int]:
    return [r.status for r in calls(sim, method, suffix)]


async def open_conversation(client: ChatClient) -> ConversationId:
    return (await client.create_conversation(CUSTOMER)).conversation_id


# --- conversations ---


async def test_create_maps_the_customer_and_sends_the_last_200_history_messages(
    api: ApiFamily, sim: Any, client: ChatClient
) -> None:
    history = [HistoryMessage("user" if i % 2 else "bot", f"turn {i}") for i in range(250)]
    created = await client.create_conversation(CUSTOMER, history)
    conv = sim.conversations[created.conversation_id]
    assert conv.customer == EXPECTED_CUSTOMER[api]
    assert [(m.author_type, m.text) for m in conv.history] == [
        ("user" if i % 2 else "bot", f"turn {i}") for i in range(50, 250)
    ]
    assert conv.channel_id == "ch1"
    assert created.created_at


async def test_create_without_history_or_customer_data(sim: Any, client: ChatClient) -> None:
    created = await client.create_conversation(Customer())
    conv = sim.conversations[created.conversation_id]
    assert conv.history == []
    assert conv.customer == {}


async def test_gateway_create_assigns_the_queue(receiver: Receiver) -> None:
    cfg = sim_config("gateway", receiver)
    async with running_simulator(cfg, host="127.0.0.1", port=0) as sim:
        client = make_client(client_config("gateway", sim.base_url, queue_id="202"))
        try:
            default = await client.create_conversation(CUSTOMER)
            chosen = await client.create_conversation(CUSTOMER, queue_id="303")
        finally:
            await client.close()
        assert sim.conversations[default.conversation_id].queue_id == "202"
        assert sim.conversations[chosen.conversation_id].queue_id == "303"


async def test_send_message_as_user_and_bot(sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    await client.send_message(cid, "hello agent")
    await client.send_message(cid, "a bot note", author="bot")
    assert [(m.author_type, m.text) for m in sim.conversations[cid].messages] == [
        ("user", "hello agent"),
        ("bot", "a bot note"),
    ]


async def test_leave_ends_the_interaction(api: ApiFamily, sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    await sim.desk.accept(cid, agent_name="Anna")
    await client.leave(cid)
    conv = sim.conversations[cid]
    assert conv.interaction is None
    assert conv.state == "idle"
    expected = ("PATCH", "/participants/user") if api == "gateway" else ("DELETE", "/customer")
    assert statuses(sim, *expected) == [204]


async def test_get_conversation(api: ApiFamily, sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    conv = await client.get_conversation(cid)
    assert conv.id == cid
    assert conv.channel_id == "ch1"
    assert conv.customer == EXPECTED_CUSTOMER[api]
    if api == "gateway":
        assert conv.state == "active"
    else:
        assert conv.state is None
        assert conv.interaction_ids == tuple(i.id for i in sim.conversations[cid].interactions)
        assert conv.interaction_ids


@pytest.mark.parametrize("api", ["chat-v2"])
async def test_v2_interactions_carry_their_times(sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    await sim.desk.accept(cid, agent_name="Anna")
    await sim.desk.leave(cid)
    [interaction] = (await client.get_conversation(cid)).interactions
    [simulated] = sim.conversations[cid].interactions
    assert (interaction.start_ms, interaction.end_ms) == (simulated.start_ms, simulated.end_ms)


async def test_list_participants(api: ApiFamily, sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    first = await sim.desk.accept(cid, agent_name="Anna")
    await sim.desk.leave(cid)
    await client.send_message(cid, "back again")
    second = await sim.desk.accept(cid, agent_name="Ben")
    agents = [(p.id, p.removed) for p in await client.list_participants(cid) if p.type == "agent"]
    if api == "gateway":  # it says who is no longer in the conversation
        assert agents == [(first.id, True), (second.id, False)]
    else:  # v2 does not
        assert agents == [(first.id, None), (second.id, None)]


def test_8x8_times_read_as_epoch_ms() -> None:
    assert epoch_ms("2026-04-01T10:00:00.250Z") == 1775037600250
    assert epoch_ms("2026-04-01T10:00:00.250") == 1775037600250  # no zone: UTC
    assert epoch_ms(1775037600250) == epoch_ms("1775037600250") == 1775037600250
    assert epoch_ms("yesterday") is None and epoch_ms(None) is None


async def test_unknown_conversation_is_not_found(client: ChatClient) -> None:
    with pytest.raises(NotFound):
        await client.get_conversation(ConversationId("no-such-conversation"))
    with pytest.raises(NotFound):
        await client.send_message(ConversationId("no-such-conversation"), "hi")


async def test_list_messages_oldest_first(sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    await client.send_message(cid, "first from user")
    await sim.desk.accept(cid, agent_name="Anna")
    await sim.desk.say(cid, "hi, Anna here")
    await client.send_message(cid, "thanks", author="bot")
    messages = await client.list_messages(cid)
    assert [(m.author_type, m.text) for m in messages if m.author_type != "system"] == [
        ("user", "first from user"),
        ("agent", "hi, Anna here"),
        ("bot", "thanks"),
    ]


async def test_list_messages_reads_every_page_with_history_first(
    api: ApiFamily, sim: Any, client: ChatClient
) -> None:
    history = [HistoryMessage("bot", f"h{i}") for i in range(120)]
    cid = (await client.create_conversation(CUSTOMER, history)).conversation_id
    await client.send_message(cid, "live")
    texts = [m.text for m in await client.list_messages(cid)]
    assert texts == [f"h{i}" for i in range(120)] + ["live"]
    if api == "gateway":  # 121 messages in pages of 50
        assert len(calls(sim, "GET", "/messages")) == 3


# --- provisioning ---


async def test_webhook_crud(api: ApiFamily, client: ChatClient, receiver: Receiver) -> None:
    created = await client.create_webhook("bridge", receiver.url)
    assert (created.name, created.uri) == ("bridge", receiver.url)
    assert created.version == ("Chat Gateway v1.0" if api == "gateway" else "v2.0")
    assert await client.get_webhook(created.id) == created
    assert created.id in {w.id for w in await client.list_webhooks()}
    updated = await client.update_webhook(created.id, "renamed", receiver.url + "?v=2")
    assert (updated.id, updated.name, updated.uri) == (created.id, "renamed", receiver.url + "?v=2")
    assert await client.get_webhook(created.id) == updated
    await client.delete_webhook(created.id)
    with pytest.raises(NotFound):
        await client.get_webhook(created.id)
    assert created.id not in {w.id for w in await client.list_webhooks()}


async def test_webhook_list_pages_through_everything(
    sim: Any, client: ChatClient, receiver: Receiver
) -> None:
    before = {w.id for w in await client.list_webhooks()}
    made = {(await client.create_webhook(f"hook {i}", receiver.url)).id for i in range(55)}
    listed = [w.id for w in await client.list_webhooks()]
    assert len(listed) == len(set(listed))  # no page read twice
    assert set(listed) == before | made
    assert len(calls(sim, "GET", "hooks")) >= 3  # 1 before, then 2 pages of 50


async def test_channel_crud(client: ChatClient, receiver: Receiver) -> None:
    hook = await client.create_webhook("bridge", receiver.url)
    created = await client.create_channel("web chat", hook.id, "101")
    assert (created.name, created.webhook_id, created.queue_id) == ("web chat", hook.id, "101")
    assert await client.get_channel(created.id) == created
    listed = {c.id: c for c in await client.list_channels()}
    assert listed[created.id] == created
    assert "ch1" in listed  # the seeded channel
    updated = await client.update_channel(created.id, "renamed", hook.id, "202")
    assert (updated.name, updated.queue_id) == ("renamed", "202")
    assert await client.get_channel(created.id) == updated
    await client.delete_channel(created.id)
    with pytest.raises(NotFound):
        await client.get_channel(created.id)


# --- keys and signed deliveries ---


async def test_verifier_accepts_a_real_signed_delivery_and_rejects_a_forgery(
    sim: Any, client: ChatClient, receiver: Receiver
) -> None:
    cid = await open_conversation(client)
    await sim.desk.accept(cid, agent_name="Anna")
    await sim.desk.say(cid, "hello from the desk")
    await eventually(lambda: len(receiver.events) >= 3, what="signed deliveries")
    verifier = WebhookVerifier(client.fetch_jwk, max_skew_s=300)
    for event in receiver.events:
        signed = await verifier.verify(event.body, event.headers)
        assert signed.tenant_id
    event = receiver.events[-1]
    with pytest.raises(Exception, match="does not verify"):
        await verifier.verify(event.body.replace(b"hello", b"HELLO"), event.headers)


async def test_rotated_key_is_fetched_and_verifies(
    sim: Any, client: ChatClient, receiver: Receiver
) -> None:
    fetched: list[str] = []

    async def fetch(kid: str) -> dict[str, Any]:
        fetched.append(kid)
        return await client.fetch_jwk(kid)

    now = [0.0]
    verifier = WebhookVerifier(fetch, max_skew_s=300, monotonic=lambda: now[0])
    cid = await open_conversation(client)
    await eventually(lambda: len(receiver.events) >= 1, what="first delivery")
    await verifier.verify(receiver.events[-1].body, receiver.events[-1].headers)
    sim.rotate_key()
    now[0] += 1.0  # past the one-lookup-per-second limit on new kids
    seen = len(receiver.events)
    await sim.desk.accept(cid, agent_name="Anna")
    await eventually(lambda: len(receiver.events) > seen, what="delivery after rotation")
    await verifier.verify(receiver.events[-1].body, receiver.events[-1].headers)
    assert len(fetched) == 2
    assert fetched[0] != fetched[1]


async def test_fetch_jwk_and_unknown_kid(client: ChatClient, receiver: Receiver) -> None:
    await open_conversation(client)
    await eventually(lambda: len(receiver.events) >= 1, what="a delivery")
    kid = _kid(receiver.events[0].headers)
    jwk = await client.fetch_jwk(kid)
    assert jwk["kty"] == "RSA"
    assert jwk["kid"] == kid
    with pytest.raises(NotFound):
        await client.fetch_jwk("no-such-kid")


async def test_fetch_jwk_sends_no_credentials(
    api: ApiFamily, sim: Any, client: ChatClient, receiver: Receiver
) -> None:
    await open_conversation(client)
    await eventually(lambda: len(receiver.events) >= 1, what="a delivery")
    tokens_before = sim.token_requests
    await client.fetch_jwk(_kid(receiver.events[0].headers))
    assert sim.token_requests == tokens_before


async def test_gateway_falls_back_to_the_v2_key_path(receiver: Receiver) -> None:
    async with running_simulator(sim_config("gateway", receiver), host="127.0.0.1", port=0) as sim:
        client = make_client(client_config("gateway", sim.base_url))
        try:
            await open_conversation(client)
            await eventually(lambda: len(receiver.events) >= 1, what="a delivery")
            kid = _kid(receiver.events[0].headers)
            sim.faults.fail_next("jwk", status=404)
            jwk = await client.fetch_jwk(kid)
        finally:
            await client.close()
    assert jwk["kid"] == kid
    paths = [r.path for r in sim.requests if "/jwk/" in r.path]
    assert paths[0].startswith("/chat-gateway/v1/jwk/")
    assert paths[1].startswith("/vcc/us/chat/v2/jwk/")


def _kid(headers: dict[str, str]) -> str:
    lowered = {name.lower(): value for name, value in headers.items()}
    return parse_jws(lowered["x-8x8-signature"]).kid


# --- chat-v2 token handling ---


@pytest.fixture
async def v2_sim(receiver: Receiver, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    ttl = getattr(request, "param", 1799)
    cfg = sim_config("chat-v2", receiver, token_ttl_s=ttl)
    async with running_simulator(cfg, host="127.0.0.1", port=0) as s:
        yield s


@pytest.fixture
async def v2_client(v2_sim: Any) -> AsyncIterator[ChatClient]:
    client = make_client(client_config("chat-v2", v2_sim.base_url))
    yield client
    await client.close()


async def test_v2_token_is_fetched_once_for_many_calls(v2_sim: Any, v2_client: ChatClient) -> None:
    cid = await open_conversation(v2_client)
    for i in range(5):
        await v2_client.send_message(cid, f"message {i}")
    await v2_client.get_conversation(cid)
    await v2_client.list_messages(cid)
    assert v2_sim.token_requests == 1


async def test_v2_concurrent_first_calls_share_one_token_fetch(
    v2_sim: Any, v2_client: ChatClient
) -> None:
    await asyncio.gather(*(v2_client.list_webhooks() for _ in range(10)))
    assert v2_sim.token_requests == 1


@pytest.mark.parametrize("v2_sim", [2.0], indirect=True)
async def test_v2_token_is_renewed_before_it_expires(v2_sim: Any, v2_client: ChatClient) -> None:
    cid = await open_conversation(v2_client)
    assert v2_sim.token_requests == 1
    await asyncio.sleep(1.85)  # past the renewal point (10% early: 1.8 s), before expiry (2 s)
    await v2_client.send_message(cid, "still here")
    assert v2_sim.token_requests == 2
    assert 401 not in [r.status for r in v2_sim.requests]


async def test_v2_token_is_refetched_once_after_a_401(v2_sim: Any, v2_client: ChatClient) -> None:
    cid = await open_conversation(v2_client)
    v2_sim.faults.fail_next("send_message", status=401)
    await v2_client.send_message(cid, "after a refused token")
    assert v2_sim.token_requests == 2
    assert statuses(v2_sim, "POST", "/messages") == [401, 202]


async def test_v2_a_second_401_is_an_auth_error(v2_sim: Any, v2_client: ChatClient) -> None:
    cid = await open_conversation(v2_client)
    v2_sim.faults.fail_next("send_message", count=2, status=401)
    with pytest.raises(AuthError):
        await v2_client.send_message(cid, "refused twice")
    assert v2_sim.token_requests == 2  # exactly one refetch
    assert statuses(v2_sim, "POST", "/messages") == [401, 401]


async def test_v2_create_survives_a_token_endpoint_outage(
    v2_sim: Any, v2_client: ChatClient
) -> None:
    # The create itself was never sent while the token endpoint failed: safe to retry.
    v2_sim.faults.fail_next("token", status=503)
    cid = await open_conversation(v2_client)
    assert cid in v2_sim.conversations
    assert v2_sim.token_requests == 2
    assert len(calls(v2_sim, "POST", "/conversations")) == 1


async def test_v2_wrong_secret_is_an_auth_error(v2_sim: Any) -> None:
    client = make_client(client_config("chat-v2", v2_sim.base_url, api_secret=SecretStr("bad")))
    try:
        with pytest.raises(AuthError):
            await client.list_webhooks()
    finally:
        await client.close()
    assert v2_sim.token_requests == 1


async def test_gateway_wrong_key_is_an_auth_error(receiver: Receiver) -> None:
    async with running_simulator(sim_config("gateway", receiver), host="127.0.0.1", port=0) as sim:
        client = make_client(client_config("gateway", sim.base_url, api_key=SecretStr("bad")))
        try:
            with pytest.raises(AuthError):
                await client.list_webhooks()
        finally:
            await client.close()
        assert [r.status for r in sim.requests] == [401]


# --- retries ---


async def test_send_retries_on_503(sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    sim.faults.fail_next("send_message", count=2, status=503)
    await client.send_message(cid, "eventually")
    assert statuses(sim, "POST", "/messages") == [503, 503, 202]
    assert [m.text for m in sim.conversations[cid].messages] == ["eventually"]


async def test_reads_and_leave_retry_on_5xx(sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    sim.faults.fail_next("get_conversation", status=502)
    sim.faults.fail_next("list_messages", status=500)
    sim.faults.fail_next("leave", status=503)
    sim.faults.fail_next("webhooks", status=504)
    assert (await client.get_conversation(cid)).id == cid
    await client.list_messages(cid)
    await client.leave(cid)
    await client.list_webhooks()
    assert sim.conversations[cid].interaction is None


async def test_send_honours_retry_after_on_429(sim: Any, client: ChatClient) -> None:
    cid = await open_conversation(client)
    sim.faults.fail_next("send_message", status=429, retry_after=1)
    started = time.monotonic()
    await client.send_message(cid, "patiently")
    assert time.monotonic() - started >= 1.0
    assert statuses(sim, "POST", "/messages") == [429, 202]


async def test_create_is_retried_on_429_after_retry_after(sim: Any, client: ChatClient) -> None:
    sim.faults.fail_next("create_conversation", status=429, retry_after=1)
    started = time.monotonic()
    cid = await open_conversation(client)
    assert time.monotonic() - started >= 1.0
    assert statuses(sim, "POST", "/conversations") == [429, 202]
    assert list(sim.conversations) == [cid]


async def test_send_retries_after_a_timeout(sim: Any, make: Callable[..., ChatClient]) -> None:
    client = make(request_timeout_s=0.5)
    cid = await open_conversation(client)
    sim.faults.fail_next("send_message", timeout=True)
    started = time.monotonic()
    await client.send_message(cid, "after a hang")
    assert time.monotonic() - started >= 0.5
    assert [m.text for m in sim.conversations[cid].messages] == ["after a hang"]
    # The hung attempt is not in the request log (it has no answer yet); the used-up fault
    # shows it happened, the one message that the retry got through.
    assert sim.faults.pending() == {}
    assert statuses(sim, "POST", "/messages") == [202]


async def test_create_is_not_retried_on_500(sim: Any, client: ChatClient) -> None:
    sim.faults.fail_next("create_conversation", status=500)
    with pytest.raises(RetryableUpstreamError) as caught:
        await open_conversation(client)
    assert not isinstance(caught.value, RequestNotSent)
    assert statuses(sim, "POST", "/conversations") == [500]


async def test_create_is_not_retried_after_a_timeout(
    sim: Any, make: Callable[..., ChatClient]
) -> None:
    client = make(request_timeout_s=0.5)
    sim.faults.fail_next("create_conversation", timeout=True)
    with pytest.raises(RetryableUpstreamError) as caught:
        await open_conversation(client)
    assert not isinstance(caught.value, RequestNotSent)
    # The hung create is not logged until it is answered; a retry would be, and would have
    # opened a conversation.
    assert sim.faults.pending() == {}
    assert calls(sim, "POST", "/conversations") == []
    assert sim.conversations == {}


async def test_budget_bounds_a_call_against_a_failing_8x8(
    sim: Any, make: Callable[..., ChatClient]
) -> None:
    client = make(total_budget_s=1.5, max_attempts=50, request_timeout_s=0.4)
    cid = await open_conversation(client)
    sim.faults.fail_next("send_message", count=100, timeout=True)
    started = time.monotonic()
    with pytest.raises(RetryableUpstreamError):
        await client.send_message(cid, "never")
    assert time.monotonic() - started < 1.5 + 0.5


# --- a closed port: nothing is ever sent ---


@pytest.fixture
def closed_port_url() -> str:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("family", ["gateway", "chat-v2"])
async def test_connection_refused_is_request_not_sent_and_create_is_retried_fast(
    family: ApiFamily, closed_port_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(client_config(family, closed_port_url, max_attempts=4))
    caplog.set_level("DEBUG", logger="bridge.retry")
    try:
        started = time.monotonic()
        with pytest.raises(RequestNotSent):
            await open_conversation(client)
        elapsed = time.monotonic() - started
        retries = [r for r in caplog.records if "retrying" in r.getMessage()]
        assert len(retries) == 3  # 4 attempts: a create may retry what never left
        assert elapsed < 3.0
        with pytest.raises(RequestNotSent):
            await client.send_message(ConversationId("c1"), "hi")
    finally:
        await client.close()
