"""The sandbox's page and the HTTP API behind it.

    GET  /                              the page (static HTML/JS/CSS, no build step, no CDN)
    GET  /static/...                    its script and style sheet
    GET  /api/info                      which bot, which 8x8 API, where the parts listen
    POST /api/chat/{sender}/messages    {"text"}: the user says something
    GET  /api/chat/{sender}/events      server-sent events: what reached the user's channel
    POST /bot                           Rasa's callback channel posts bot messages here
    /_sim/...                           the simulator's desk control API (its own docs)

The chat goes through the bot exactly as a front end on Rasa's callback channel would: the
user's text to `POST {bot}/webhooks/callback/webhook`, the bot's messages back to `/bot`.
So the page works the same with the demo bot and with a real Rasa.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bridge.sandbox.chat import ChatHub, ChatLabels
from bridge.simulator import Simulator
from bridge.simulator.control_api import ControlApi
from bridge.simulator.errors import ApiProblem
from bridge.simulator.routing import Handler

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0
# The page makes sender ids like "web-3f9c..."; anything else that is safe in a URL is fine.
_SENDER = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
_MAX_TEXT = 4000
# The page loads nothing from elsewhere and runs no inline script.
_CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error in JSON: the desk control API's as the simulator's own server answers
    them, ours and aiohttp's as `{"error": reason}`."""
    try:
        return await handler(request)
    except ApiProblem as problem:
        return problem.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _problem(exc.status, exc.reason)


class PageServer:
    def __init__(
        self,
        *,
        hub: ChatHub,
        labels: ChatLabels,
        sim: Simulator,
        bot_url: str,
        info: dict[str, Any],
    ) -> None:
        self._hub = hub
        self._labels = labels
        self._sim = sim
        self._bot_url = bot_url
        self._info = info
        self._http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_json_errors], client_max_size=64 * 1024)
        app.router.add_get("/", self.index)
        app.router.add_static("/static/", STATIC, append_version=False)
        app.router.add_get("/api/info", self.info)
        app.router.add_post("/api/chat/{sender}/messages", self.send)
        app.router.add_get("/api/chat/{sender}/events", self.events)
        app.router.add_post("/bot", self.bot_message)
        ControlApi(self._sim).add_to(app)
        app.cleanup_ctx.append(self._session)
        return app

    async def _session(self, _app: web.Application) -> AsyncIterator[None]:
        # A user turn may wait for an 8x8 create with its retries (about 10 s): be generous.
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        yield
        await self._http.close()

    async def index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(
            STATIC / "index.html",
            headers={"Content-Security-Policy": _CSP, "Cache-Control": "no-cache"},
        )

    async def info(self, _request: web.Request) -> web.Response:
        return web.json_response(self._info)

    async def send(self, request: web.Request) -> web.Response:
        """The user's message, to the bot's callback channel; the bot's answers come back
        through `/bot` and the event stream, as they would on a real front end."""
        sender = _sender(request)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "the body is not valid JSON")
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > _MAX_TEXT:
            return _problem(400, f"text must be 1 to {_MAX_TEXT} characters")
        payload = {"sender": sender, "message": text}
        assert self._http is not None
        try:
            async with self._http.post(
                f"{self._bot_url}/webhooks/callback/webhook", json=payload
            ) as resp:
                if resp.status >= 400:
                    return _problem(502, f"the bot answered HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _problem(502, f"the bot did not answer ({type(exc).__name__})")
        return web.json_response({"ok": True})

    async def bot_message(self, request: web.Request) -> web.Response:
        """Rasa's callback output: `{"recipient_id": sender, "text": ...}` per bot message."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "the body is not valid JSON")
        sender = body.get("recipient_id") if isinstance(body, dict) else None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(sender, str) or not _SENDER.match(sender):
            return _problem(400, "recipient_id is missing or not a sender id")
        if isinstance(text, str) and text:
            item = await self._labels.label(sender, text)
            buttons = _buttons(body.get("buttons"))
            self._hub.publish(sender, {**item, "buttons": buttons} if buttons else item)
        return web.json_response({"ok": True})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: one `data:` JSON item per message, with its `id`, so a browser
        that reconnects (Last-Event-ID) gets what it missed and nothing twice."""
        sender = _sender(request)
        after = _last_event_id(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            await response.write(b": connected\n\n")
            while not self._hub.closed:
                items = self._hub.since(sender, after)
                for item in items:
                    data = json.dumps(item, ensure_ascii=False)
                    await response.write(f"id: {item['id']}\ndata: {data}\n\n".encode())
                    after = item["id"]
                if not items and not await self._hub.wait(sender, HEARTBEAT_S):
                    await response.write(b": keep-alive\n\n")
            await response.write_eof()
        return response


def _sender(request: web.Request) -> str:
    sender = request.match_info["sender"]
    if not _SENDER.match(sender):
        raise web.HTTPBadRequest(reason="bad sender id")
    return sender


def _last_event_id(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
    return int(raw) if raw.isdigit() else 0


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _buttons(value: Any) -> list[dict[str, str]]:
    """A bot message's buttons (title and payload, both text), at most ten; the rest dropped."""
    if not isinstance(value, list):
        return []
    return [
        {"title": b["title"][:200], "payload": b["payload"][:_MAX_TEXT]}
        for b in value[:10]
        if isinstance(b, dict) and isinstance(b.get("title"), str)
        and isinstance(b.get("payload"), str) and b["payload"]
    ]  # fmt: skip
