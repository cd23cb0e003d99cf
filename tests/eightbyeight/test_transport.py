"""Transport behaviour the simulator cannot provoke, against a small loopback server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bridge.eightbyeight import make_client
from bridge.eightbyeight.auth import ApiKeyAuth
from bridge.eightbyeight.config import EightByEightConfig
from bridge.eightbyeight.transport import Caller, Retry, Transport
from bridge.errors import (
    NotFound,
    PermanentUpstreamError,
    RequestNotSent,
    RetryableUpstreamError,
)
from bridge.retry import RetryPolicy

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Stub:
    """A loopback HTTP server whose one route answers with the handlers given, in turn."""

    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.seen: list[web.Request] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        handler = self.handlers.pop(0) if self.handlers else ok
        return await handler(request)


async def ok(request: web.Request) -> web.StreamResponse:
    return web.json_response({"ok": True})


async def hang(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(5)
    return web.json_response({"late": True})


async def gone(request: web.Request) -> web.StreamResponse:
    return web.json_response({"message": "Resource of type X was not found."}, status=404)


async def not_json(request: web.Request) -> web.StreamResponse:
    return web.Response(status=202, text="<html>accepted</html>")


async def disconnect(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    return web.Response()


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    server = Stub()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def caller() -> AsyncIterator[Caller]:
    transport = Transport()
    policy = RetryPolicy(max_attempts=3, total_budget_s=5.0, base_delay_s=0.01)
    yield Caller(
        transport, ApiKeyAuth(SecretStr("key"), "t1"), request_timeout_s=0.3, policy=policy
    )
    await transport.close()


async def test_credentials_and_json_go_out(stub: Stub, caller: Caller) -> None:
    answer = await caller.call("op", "POST", stub.url + "/x", json_body={"a": 1})
    assert answer == {"ok": True}
    request = stub.seen[0]
    assert request.headers["x-api-key"] == "key"
    assert request.headers["X-8x8-Tenant"] == "t1"
    assert request.headers["Content-Type"].startswith("application/json")
    assert "application/json" in request.headers["Accept"]


async def test_unauthenticated_call_sends_no_credentials(stub: Stub, caller: Caller) -> None:
    await caller.call("op", "GET", stub.url + "/jwk", authenticated=False)
    assert "x-api-key" not in stub.seen[0].headers


async def test_delete_repeated_after_an_ambiguous_failure_accepts_404(
    stub: Stub, caller: Caller
) -> None:
    stub.handlers = [hang, gone]
    assert await caller.call("delete_webhook", "DELETE", stub.url + "/w/1") is None
    assert len(stub.seen) == 2


async def test_delete_of_a_missing_resource_is_not_found(stub: Stub, caller: Caller) -> None:
    stub.handlers = [gone]
    with pytest.raises(NotFound):
        await caller.call("delete_webhook", "DELETE", stub.url + "/w/1")


async def test_get_404_after_a_timeout_is_still_not_found(stub: Stub, caller: Caller) -> None:
    stub.handlers = [hang, gone]
    with pytest.raises(NotFound):
        await caller.call("get_webhook", "GET", stub.url + "/w/1")


async def test_success_without_json_is_permanent_and_not_repeated(
    stub: Stub, caller: Caller
) -> None:
    stub.handlers = [not_json]
    with pytest.raises(PermanentUpstreamError, match="not JSON"):
        await caller.call("send_message", "POST", stub.url + "/m")
    assert len(stub.seen) == 1


async def test_disconnect_after_sending_is_ambiguous(stub: Stub, caller: Caller) -> None:
    stub.handlers = [disconnect]
    with pytest.raises(RetryableUpstreamError) as caught:
        await caller.call("create", "POST", stub.url + "/c", retry_on=Retry.UNSENT_ONLY)
    assert not isinstance(caught.value, RequestNotSent)
    assert len(stub.seen) == 1


async def test_disconnect_is_retried_for_safe_calls(stub: Stub, caller: Caller) -> None:
    stub.handlers = [disconnect]
    assert await caller.call("send_message", "POST", stub.url + "/m") == {"ok": True}
    assert len(stub.seen) == 2


async def test_empty_success_body_is_none(stub: Stub, caller: Caller) -> None:
    async def accepted(request: web.Request) -> web.StreamResponse:
        return web.Response(status=202)

    stub.handlers = [accepted]
    assert await caller.call("send_message", "POST", stub.url + "/m") is None


def _config(base_url: str) -> EightByEightConfig:
    return EightByEightConfig(
        api="gateway", base_url=base_url, api_key=SecretStr("key"), channel_id="ch"
    )


async def test_a_passed_in_session_is_left_open(stub: Stub) -> None:
    async with aiohttp.ClientSession() as session:
        client = make_client(_config(stub.url), session)
        await client.list_webhooks()
        await client.close()
        assert not session.closed


async def test_an_own_session_is_closed_and_reopened_lazily(stub: Stub) -> None:
    client = make_client(_config(stub.url))
    await client.list_webhooks()
    await client.close()
    await client.list_webhooks()  # a closed client may be used again: a new session
    await client.close()
    assert len(stub.seen) == 2


async def test_path_segments_are_quoted(stub: Stub) -> None:
    client = make_client(_config(stub.url))
    try:
        await client.get_webhook("../../admin?x=1")
    except PermanentUpstreamError:
        pass  # the stub's answer is not a webhook; only the path matters here
    finally:
        await client.close()
    request = stub.seen[0]
    assert request.raw_path.startswith("/chat-gateway/v1/webhooks/..%2F..%2Fadmin%3F")
    assert request.path == "/chat-gateway/v1/webhooks/../../admin?x=1"  # one segment
    assert request.query_string == ""
