"""The desk control API under `/_sim/`: JSON, no 8x8 auth, documented in the package docstring.

Errors are `{"error": "..."}`: 400 for bad input, 404 for an unknown conversation, 409 when
the action does not fit the conversation's state. It is not recorded in `Simulator.requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

from aiohttp import web

from bridge.simulator.errors import ApiProblem
from bridge.simulator.state import InvalidTransition, UnknownConversation
from bridge.simulator.views import conversation_view, delivery_view
from bridge.simulator.wire import dumps, respond

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator

PREFIX = "/_sim"
HEARTBEAT_S = 15.0


def _fail(status: int, message: str) -> NoReturn:
    raise ApiProblem(status, {"error": message}, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        value: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        _fail(400, "the body is not valid JSON")
    if not isinstance(value, dict):
        _fail(400, "the body must be a JSON object")
    return value


def _optional(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """body[name] if it has type `kind` (JSON true/false is never a number here), else None."""
    value = body.get(name)
    if value is None:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        _fail(400, f"{name} has the wrong type")
    return value


def _string(body: dict[str, Any], name: str) -> str:
    value = _optional(body, name, str)
    if value is None:
        _fail(400, f"{name} is required")
    return str(value)


class ControlApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def add_to(self, app: web.Application) -> None:
        one = f"{PREFIX}/conversations/{{conversation_id}}"
        router = app.router
        router.add_get(f"{PREFIX}/info", self.info)
        router.add_get(f"{PREFIX}/conversations", self.conversations)
        router.add_get(one, self.conversation)
        for action in ("accept", "say", "typing", "leave", "transfer"):
            router.add_post(f"{one}/{action}", self._action(action))
        router.add_get(f"{PREFIX}/faults", self.faults)
        router.add_post(f"{PREFIX}/faults", self.add_fault)
        router.add_delete(f"{PREFIX}/faults", self.clear_faults)
        router.add_get(f"{PREFIX}/deliveries", self.deliveries)
        router.add_get(f"{PREFIX}/requests", self.requests)
        router.add_post(f"{PREFIX}/webhook-url", self.webhook_url)
        router.add_post(f"{PREFIX}/rotate-key", self.rotate_key)
        router.add_get(f"{PREFIX}/retry-schedule", self.retry_schedule)
        router.add_post(f"{PREFIX}/retry-schedule", self.set_retry_schedule)
        router.add_get(f"{PREFIX}/events", self.events)

    async def info(self, request: web.Request) -> web.StreamResponse:
        config = self.sim.config
        return respond(
            {
                "baseUrl": self.sim.base_url,
                "api": config.api,
                "tenantId": config.tenant_id,
                "channelId": config.channel_id,
                "queueId": config.queue_id,
                "webhookUrl": self.sim.webhook_url,
                "kid": self.sim.kid,
            }
        )

    async def conversations(self, request: web.Request) -> web.StreamResponse:
        views = [conversation_view(c) for c in self.sim.conversations.values()]
        return respond({"conversations": views})

    async def conversation(self, request: web.Request) -> web.StreamResponse:
        conv = self.sim.conversations.get(request.match_info["conversation_id"])
        if conv is None:
            _fail(404, "no such conversation")
        return respond(conversation_view(conv))

    def _action(self, action: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            conversation_id = request.match_info["conversation_id"]
            body = await _body(request)
            try:
                await self._run(action, conversation_id, body)
            except UnknownConversation:
                _fail(404, "no such conversation")
            except InvalidTransition as exc:
                _fail(409, str(exc))
            except ValueError as exc:
                _fail(400, str(exc))
            return respond(conversation_view(self.sim.conversation(conversation_id)))

        return handle

    async def _run(self, action: str, conversation_id: str, body: dict[str, Any]) -> None:
        desk = self.sim.desk
        if action == "accept":
            name = _optional(body, "agentName", str)
            await desk.accept(
                conversation_id,
                agent_name="Anna" if name is None else name,
                agent_id=_optional(body, "agentId", str),
            )
        elif action == "say":
            await desk.say(conversation_id, _string(body, "text"))
        elif action == "typing":
            on = _optional(body, "on", bool)
            await desk.typing(conversation_id, True if on is None else on)
        elif action == "leave":
            await desk.leave(conversation_id)
        else:
            await desk.transfer(conversation_id, _string(body, "queueId"))

    async def faults(self, request: web.Request) -> web.StreamResponse:
        return respond({"pending": self.sim.faults.pending()})

    async def add_fault(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        route = _string(body, "route")
        retry_after = _optional(body, "retryAfter", (int, float))
        try:
            self.sim.faults.fail_next(
                route,
                count=body.get("count", 1),
                status=body.get("status", 503),
                retry_after=retry_after,
                timeout=bool(_optional(body, "timeout", bool)),
            )
        except (ValueError, TypeError) as exc:
            _fail(400, str(exc))
        return respond({"pending": self.sim.faults.pending()})

    async def clear_faults(self, request: web.Request) -> web.StreamResponse:
        self.sim.faults.clear()
        return respond({"pending": {}})

    async def deliveries(self, request: web.Request) -> web.StreamResponse:
        return respond({"deliveries": [delivery_view(d) for d in self.sim.deliveries]})

    async def requests(self, request: web.Request) -> web.StreamResponse:
        items = [
            {"method": r.method, "path": r.path, "status": r.status} for r in self.sim.requests
        ]
        return respond({"requests": items, "tokenRequests": self.sim.token_requests})

    async def webhook_url(self, request: web.Request) -> web.StreamResponse:
        url = (await _body(request)).get("url")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            _fail(400, "url must be an http(s) URL or null")
        self.sim.set_webhook_url(url)
        return respond({"webhookUrl": url})

    async def retry_schedule(self, request: web.Request) -> web.StreamResponse:
        delays = list(self.sim.retry_delays)
        return respond({"delays": delays, "attempts": len(delays) + 1})

    async def set_retry_schedule(self, request: web.Request) -> web.StreamResponse:
        """`{"delays": [0.2, 0.5]}`: the pauses before each retry (attempts = 1 + their count)."""
        delays = _optional(await _body(request), "delays", list)
        if delays is None or not all(
            isinstance(d, int | float) and not isinstance(d, bool) for d in delays
        ):
            _fail(400, "delays must be a list of seconds")
        try:
            self.sim.set_retry_delays(tuple(float(d) for d in delays))
        except ValueError as exc:
            _fail(400, str(exc))
        return await self.retry_schedule(request)

    async def rotate_key(self, request: web.Request) -> web.StreamResponse:
        return respond({"kid": self.sim.rotate_key()})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one `event: <type>` with JSON `data` per change notice."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        # A first comment tells the client the stream is live before anything happens.
        await response.write(b": connected\n\n")
        subscription = self.sim.subscribe()
        try:
            while True:
                try:
                    notice = await asyncio.wait_for(anext(subscription), HEARTBEAT_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                except StopAsyncIteration:
                    break
                data = dumps(notice)
                await response.write(f"event: {notice['type']}\ndata: ".encode() + data + b"\n\n")
        except (ConnectionResetError, ConnectionError):
            pass  # the watcher went away
        finally:
            subscription.close()
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response
