"""The demo bot over HTTP: the slice of Rasa's HTTP API the bridge calls, Rasa's callback
channel for the page's chat, and Rasa's side of the action server protocol.

Served (as Rasa 3.6 answers them, rasa-integration.md §2):

    GET  /version
    GET  /conversations/{sender}/tracker
    POST /conversations/{sender}/tracker/events   ?output_channel=..&execute_side_effects=..
    POST /conversations/{sender}/trigger_intent   ?output_channel=..
    POST /webhooks/callback/webhook               {"sender", "message"} -> "success"

Like Rasa's callback channel, every bot message is POSTed to `callback_url` as
`{"recipient_id": sender, "text": ...}`, so the sandbox's page cannot tell this bot from a
real Rasa. Custom actions are POSTed to `action_url` (Rasa's `action_endpoint`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from bridge.sandbox.demo_bot.domain import BotDomain
from bridge.sandbox.demo_bot.engine import RASA_VERSION, DemoBot, Output, UnknownIntent

log = logging.getLogger(__name__)

CALLBACK_CHANNEL = "callback"


class DemoBotServer:
    def __init__(self, domain: BotDomain, *, action_url: str, callback_url: str) -> None:
        self.bot = DemoBot(domain, self._call_action)
        self._action_url = action_url
        self._callback_url = callback_url
        self._http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        one = "/conversations/{sender}"
        app.router.add_get("/version", self.version)
        app.router.add_get(f"{one}/tracker", self.get_tracker)
        app.router.add_post(f"{one}/tracker/events", self.add_events)
        app.router.add_post(f"{one}/trigger_intent", self.trigger_intent)
        app.router.add_post("/webhooks/callback/webhook", self.callback_webhook)
        app.cleanup_ctx.append(self._session)
        return app

    async def _session(self, _app: web.Application) -> AsyncIterator[None]:
        # Rasa waits up to 300 s for an action; the sandbox's actions answer in seconds.
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        yield
        await self._http.close()

    # --- routes ---

    async def version(self, _request: web.Request) -> web.Response:
        # `demo_bot` is ours: nothing should mistake this stand-in for a Rasa server.
        return web.json_response(
            {"version": RASA_VERSION, "minimum_compatible_version": "3.6.0", "demo_bot": True}
        )

    async def get_tracker(self, request: web.Request) -> web.Response:
        return web.json_response(_state(self.bot, request))

    async def add_events(self, request: web.Request) -> web.Response:
        sender = request.match_info["sender"]
        body = await _json(request)
        events = body if isinstance(body, list) else [body]
        if not all(isinstance(e, dict) and isinstance(e.get("event"), str) for e in events):
            raise web.HTTPBadRequest(reason="events must be objects with an `event` name")
        side_effects = request.query.get("execute_side_effects", "false").lower() == "true"
        output = self._output(request) if side_effects else None
        await self.bot.add_events(sender, events, output)
        return web.json_response(_state(self.bot, request))

    async def trigger_intent(self, request: web.Request) -> web.Response:
        sender = request.match_info["sender"]
        body = await _json(request)
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            return _error(400, "Name of the intent not provided in request body.")
        entities = body.get("entities") or {}
        if isinstance(entities, list):  # the long form: full entity dicts
            entities = {str(e.get("entity")): e.get("value") for e in entities}
        if not isinstance(entities, dict):
            return _error(400, "entities must be an object or a list")
        collected: list[dict[str, Any]] = []
        output = self._output(request, collected)
        try:
            await self.bot.trigger_intent(sender, name, entities, output)
        except UnknownIntent:
            return _error(404, f"The intent '{name}' does not exist in the domain.")
        answer: dict[str, Any] = {"tracker": _state(self.bot, request)}
        if not self._to_callback(request):
            answer["messages"] = collected  # a collecting channel, as Rasa answers it
        return web.json_response(answer)

    async def callback_webhook(self, request: web.Request) -> web.Response:
        body = await _json(request)
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="expected a JSON object")
        sender, text = body.get("sender"), body.get("message")
        if not isinstance(sender, str) or not sender or not isinstance(text, str):
            raise web.HTTPBadRequest(reason="`sender` and `message` are required")
        # Rasa 3.6's callback channel passes no metadata on (its REST channel would), so
        # neither does this one: the agent sees the same customer data with either bot.
        await self.bot.handle_message(sender, text, self._send_to_callback)
        return web.Response(text="success")

    # --- where bot messages go ---

    def _to_callback(self, request: web.Request) -> bool:
        # The demo bot has one channel that can push: `latest` (and `callback`) is it.
        return request.query.get("output_channel", "") in ("latest", CALLBACK_CHANNEL)

    def _output(
        self, request: web.Request, collected: list[dict[str, Any]] | None = None
    ) -> Output:
        if self._to_callback(request):
            return self._send_to_callback

        async def collect(sender: str, event: dict[str, Any]) -> None:
            if collected is not None:
                collected.append({"recipient_id": sender, "text": event.get("text")})

        return collect

    async def _send_to_callback(self, sender: str, event: dict[str, Any]) -> None:
        text = event.get("text")
        if not text:
            return  # Rasa's callback output sends text messages; the sandbox has no others
        assert self._http is not None
        message: dict[str, Any] = {"recipient_id": sender, "text": text}
        buttons = (event.get("data") or {}).get("buttons")
        if buttons:
            message["buttons"] = buttons  # as Rasa's callback output sends them
        try:
            async with self._http.post(self._callback_url, json=message) as resp:
                if resp.status >= 400:
                    log.warning("callback_refused", extra={"status": resp.status})
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("callback_unreachable", extra={"error": type(exc).__name__})

    async def _call_action(self, call: dict[str, Any]) -> dict[str, Any] | None:
        assert self._http is not None
        action = call.get("next_action")
        try:
            async with self._http.post(self._action_url, json=call) as resp:
                if resp.status != 200:
                    log.warning("action_failed", extra={"action": action, "status": resp.status})
                    return None
                result = await resp.json()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("action_unreachable", extra={"action": action, "error": type(exc).__name__})
            return None
        return result if isinstance(result, dict) else None


def _state(bot: DemoBot, request: web.Request) -> dict[str, Any]:
    """The tracker as Rasa answers with it; `include_events=NONE` leaves the events out
    (the other verbosities give them all: the sandbox never restarts a conversation)."""
    state = bot.tracker(request.match_info["sender"]).state()
    if request.query.get("include_events", "").upper() == "NONE":
        del state["events"]
    return state


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(reason="the body is not valid JSON") from None


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"version": RASA_VERSION, "status": "failure", "message": message, "code": status},
        status=status,
    )
