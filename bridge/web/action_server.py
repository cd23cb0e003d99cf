"""POST /webhook and GET /actions: the rasa-sdk action server protocol, served by aiohttp.

rasa-sdk's own executor runs the actions, so the answers (and errors) are what the stock
server gives: 200 {events, responses}, 400 on ActionExecutionRejection, 404 for an unknown
action; a broken request body gets a 400 instead of a stack trace. With
BRIDGE_ACTION_UPSTREAM, an action the bridge does not own goes to the bot's own server.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

from aiohttp import web
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException

from bridge.host import ActionContext, serving
from bridge.web.upstream import Upstream

log = logging.getLogger(__name__)

ACTIONS_PACKAGE = "actions"  # imported by name: bridge/ never imports the actions statically


class ActionServer:
    def __init__(
        self,
        context: ActionContext,
        package: str = ACTIONS_PACKAGE,
        upstream: Upstream | None = None,
    ) -> None:
        self.context = context  # handed to the actions per call (bridge.host)
        self.executor = ActionExecutor()
        self.executor.register_package(package)
        self.upstream = upstream  # the bot's own action server: every other action goes there

    async def list_actions(self, _request: web.Request) -> web.Response:
        own = [item.model_dump() for item in self.executor.list_actions()]
        if self.upstream is not None:
            names = {item["name"] for item in own}
            own += [a for a in await self.upstream.list_actions() if a.get("name") not in names]
        return web.json_response(own)

    async def webhook(self, request: web.Request) -> web.Response:
        call, body = await _action_call(request)
        if call is None:
            return web.json_response({"error": "Invalid body request"}, status=400)
        action = call["next_action"]
        if self.upstream is not None and action not in self.executor.actions:
            return await self.upstream.run(body, request.headers, action)
        try:
            with serving(self.context):
                result = await self.executor.run(call)
        except ActionExecutionRejection as exc:
            return web.json_response(
                {"error": exc.message, "action_name": exc.action_name}, status=400
            )
        except ActionNotFoundException as exc:
            return web.json_response(
                {"error": exc.message, "action_name": exc.action_name}, status=404
            )
        return web.json_response(result.model_dump() if result else None)


async def _action_call(request: web.Request) -> tuple[dict[str, Any] | None, bytes]:
    """The call, and its JSON text as Rasa sent it (inflated)."""
    raw = await request.read()
    try:
        call = json.loads(raw)
    except ValueError:
        # Rasa deflates the body with COMPRESS_ACTION_SERVER_REQUEST; aiohttp usually inflates
        # it already, from Content-Encoding, but a proxy may have dropped that header.
        try:
            raw = zlib.decompress(raw)
            call = json.loads(raw)
        except (ValueError, zlib.error):
            return None, raw
    if not isinstance(call, dict) or not isinstance(call.get("next_action"), str):
        return None, raw
    if not isinstance(call.get("tracker"), dict):
        return None, raw
    return call, raw
