"""The aiohttp application and its server: both 8x8 APIs, the desk control API, and the two
middlewares every request passes (recording, and turning every failure into a JSON answer)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, NamedTuple

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.chat_v2_api import ChatV2Api
from bridge.simulator.control_api import PREFIX as CONTROL_PREFIX
from bridge.simulator.control_api import ControlApi
from bridge.simulator.errors import ApiProblem
from bridge.simulator.gateway_api import GatewayApi
from bridge.simulator.provisioning_api import ProvisioningApi
from bridge.simulator.realtime_api import RealtimeApi
from bridge.simulator.routing import Handler, guarded

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator

log = logging.getLogger("bridge.simulator.server")

MAX_BODY_BYTES = 1024 * 1024


class RecordedRequest(NamedTuple):
    """One API call the simulator answered. Not recorded: the desk control API, and calls
    whose client gave up before the answer (e.g. during a `timeout=True` fault)."""

    method: str
    path: str
    status: int


def _style(path: str) -> errors.Style | None:
    """Whose error bodies a path answers with (None: the control API's own)."""
    if path.startswith("/vcc/"):
        return "chat-v2"
    if path.startswith("/oauth/"):
        return "token"
    if path.startswith(CONTROL_PREFIX + "/"):
        return None
    return "gateway"


def _http_problem(request: web.Request, exc: web.HTTPException) -> ApiProblem:
    """aiohttp's own errors (unknown path, wrong method, body too large) in JSON."""
    style = _style(request.path)
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    if style is None:
        return ApiProblem(
            exc.status, {"error": exc.reason}, content_type="application/json", headers=headers
        )
    if exc.status == 404:
        return errors.not_found(style, "", "Path", request.path)
    return ApiProblem(exc.status, {"message": exc.reason, "errors": [exc.reason]}, headers=headers)


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiProblem as problem:
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_problem(request, exc).response()
    except asyncio.CancelledError:
        raise
    except Exception:
        # A bug, not bad input: logged with its traceback here, never sent to the caller.
        log.exception("sim_unhandled_error", extra={"method": request.method, "path": request.path})
        style = _style(request.path)
        if style is None:
            return ApiProblem(
                500, {"error": "internal error"}, content_type="application/json"
            ).response()
        return errors.server_error(style).response()


def build_app(sim: Simulator) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not request.path.startswith(CONTROL_PREFIX + "/"):
            sim.requests.append(RecordedRequest(request.method, request.path, response.status))
        return response

    app = web.Application(middlewares=[record, _problems], client_max_size=MAX_BODY_BYTES)
    routes = [
        *GatewayApi(sim).routes(),
        *ProvisioningApi(sim, "gateway").routes(),
        *ChatV2Api(sim).routes(),
        *ProvisioningApi(sim, "chat-v2").routes(),
        *RealtimeApi(sim).routes(),
    ]
    for route in routes:
        app.router.add_route(route.method, route.path, guarded(sim, route))
    ControlApi(sim).add_to(app)
    return app


class SimServer:
    def __init__(self, sim: Simulator) -> None:
        self._runner = web.AppRunner(
            build_app(sim),
            access_log=None,
            # A client that gives up (timeout faults!) cancels its handler at once.
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )

    async def start(self, host: str, port: int) -> str:
        """Listen on host:port (0: any free port); return the base URL."""
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except BaseException:
            await self._runner.cleanup()
            raise
        bound_port = self._runner.addresses[0][1]
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        return f"http://[{host}]:{bound_port}" if ":" in host else f"http://{host}:{bound_port}"

    async def stop(self) -> None:
        await self._runner.cleanup()
