"""What every 8x8 route passes before its handler: fault injection first (a failing gateway
fails before it checks anything), then the region, then 8x8's authentication."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NoReturn

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.auth import check_api_key, check_bearer, check_path_tenant
from bridge.simulator.delivery import QueuedEvent
from bridge.simulator.faults import Fault

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Auth = Literal["api_key", "bearer", "realtime", "none"]

REGIONS = frozenset({"us", "eu", "ca", "ap"})


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    name: str  # the route's name for fault injection (faults.ROUTES)
    style: errors.Style  # whose error bodies it answers with
    auth: Auth


def guarded(sim: Simulator, route: Route) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if route.name == "token":
            sim.token_requests += 1  # every call counts, failed or not
        fault = sim.faults.take(route.name)
        if fault is not None:
            await _inject(sim, route, fault)
        _authenticate(sim, route, request)
        return await route.handler(request)

    return handle


async def _inject(sim: Simulator, route: Route, fault: Fault) -> NoReturn:
    if fault.timeout:
        await sim.hang()
        raise errors.server_error(route.style, 504, "Gateway timeout (injected fault).")
    raise errors.for_status(
        route.style,
        route.name,
        fault.status,
        tenant_id=sim.config.tenant_id,
        customer_id=sim.config.customer_id,
        retry_after_s=fault.retry_after,
    )


def _authenticate(sim: Simulator, route: Route, request: web.Request) -> None:
    config = sim.config
    region = request.match_info.get("region")
    if region is not None and region not in REGIONS:
        raise errors.not_found(route.style, route.name, "Region", region)
    if route.auth == "api_key":
        check_api_key(request.headers, config.api_key, config.tenant_id, config.customer_id)
    elif route.auth == "realtime":
        check_bearer(request.headers, sim.rtm_tokens)
    elif route.auth == "bearer":
        check_bearer(request.headers, sim.tokens)
        tenant = request.match_info.get("tenant")
        if tenant is not None:
            check_path_tenant(tenant, config.tenant_id, config.customer_id)


def jwk_route(sim: Simulator, path: str, style: errors.Style) -> Route:
    """The public key by kid (no auth), on either API's path (spec §2.4, §4.3)."""

    async def jwk(request: web.Request) -> web.StreamResponse:
        kid = request.match_info["kid"]
        key = sim.keys.jwk(kid)
        if key is None:
            raise errors.not_found(style, "jwk", "JWKPublic", kid)
        return web.json_response(key)

    return Route("GET", path, jwk, "jwk", style, "none")


async def answer_create(
    sim: Simulator,
    request: web.Request,
    response: web.Response,
    conversation_id: str,
    first: QueuedEvent,
) -> web.StreamResponse:
    """Answer a create, ordered against its first event as the config asks.

    Normally the answer goes out first and the held events follow. With `early_events` the
    first event is attempted (delivered, or failed once) before the answer: the race a
    bridge must survive, made certain.
    """
    if sim.config.early_events:
        # The attempt is bounded by the delivery timeout; past that, answer regardless.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(first.attempted.wait(), sim.config.delivery_timeout_s + 1)
        return response
    try:
        await response.prepare(request)
        await response.write_eof()
    finally:
        sim.release(conversation_id)
    return response
