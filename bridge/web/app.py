"""The aiohttp application of `handoff-bridge serve`: routes, middleware, lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.errors import StoreUnavailable
from bridge.web.action_server import MAX_CALL_BYTES
from bridge.web.auth import ActionToken
from bridge.web.limits import body_deadline, refuse_encodings
from bridge.web.runtime import Runtime

log = logging.getLogger(__name__)

RUNTIME = web.AppKey("runtime", Runtime)

# Rasa's action calls carry the whole tracker (and possibly the domain): allow large bodies
# there. The 8x8 webhook enforces its own, much smaller, limit while streaming.
_MAX_ACTION_BODY = MAX_CALL_BYTES


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error is a short JSON answer; a bug is logged and answered 500 without a trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response({"result": exc.reason}, status=exc.status)
    except StoreUnavailable:
        return web.json_response({"result": "store unavailable"}, status=503)
    except Exception:
        log.exception("unhandled_error", extra={"path": request.path})
        return web.json_response({"result": "internal error"}, status=500)


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    try:
        await request.app[RUNTIME].store.ping()
    except StoreUnavailable as exc:
        # Which dependency, not its address or error text: /ready is often public.
        log.warning("not_ready", extra={"dependency": "store", "error": str(exc)})
        return web.json_response({"status": "unavailable", "reason": "store"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[RUNTIME].metrics.render()
    return web.Response(
        body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


def create_app(runtime: Runtime, *, run_relay: bool = True) -> web.Application:
    """The service's app. The runtime (store, clients, relay) is built by the caller and
    closed when the app shuts down; the relay starts with the app and stops gracefully.
    Serve it with `limits.server_options(...)` (timeouts, and inflation left to the app)."""
    settings = runtime.settings
    middlewares: list[Middleware] = [
        json_errors,
        ActionToken(settings.action_tokens).middleware(),
        refuse_encodings,
        body_deadline(settings.bridge_client_timeout_s),
    ]
    app = web.Application(middlewares=middlewares, client_max_size=_MAX_ACTION_BODY)
    app[RUNTIME] = runtime
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/8x8/events", runtime.door.handle)
    for route in runtime.extra_routes:
        app.router.add_route(route.method, route.path, route.handler)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        if run_relay:
            runtime.relay.start()
            runtime.outbox.start()
            if runtime.recovery is not None:
                runtime.recovery.start()
        yield
        if runtime.recovery is not None:
            await runtime.recovery.stop()
        await runtime.outbox.stop()
        await runtime.relay.stop()
        await runtime.close()

    app.cleanup_ctx.append(lifecycle)
    return app
