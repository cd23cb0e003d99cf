"""POST /webhook and GET /actions: the rasa-sdk action server protocol, served by aiohttp.

rasa-sdk's own executor runs the actions, so the answers (and errors) are what the stock
server gives: 200 {events, responses}, 400 on ActionExecutionRejection, 404 for an unknown
action, 449 for a call that names a domain (`domain_digest`) without sending it when this
process has not seen that domain yet (Rasa Pro then retries with the domain; the executor
keeps the last domain and its digest, so later calls may leave it out). A body that is not a
well-formed action call gets a 400 that says what is wrong, never a stack trace.
"""

from __future__ import annotations

import logging
import zlib

from aiohttp import web
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import (
    ActionExecutionRejection,
    ActionMissingDomainException,
    ActionNotFoundException,
)

from bridge.web.action_call import BadCall, parse_call
from bridge.web.limits import BodyTooLarge, decoded_body, inflate

log = logging.getLogger(__name__)

ACTIONS_PACKAGE = "actions"  # imported by name: bridge/ never imports the actions statically
# Rasa sends the whole tracker (and often the domain): a long conversation is megabytes.
MAX_CALL_BYTES = 32 * 1024 * 1024


class ActionServer:
    def __init__(self, package: str = ACTIONS_PACKAGE) -> None:
        self.executor = ActionExecutor()
        self.executor.register_package(package)

    async def list_actions(self, _request: web.Request) -> web.Response:
        return web.json_response([item.model_dump() for item in self.executor.list_actions()])

    async def webhook(self, request: web.Request) -> web.Response:
        try:
            call = parse_call(await _call_bytes(request))
        except BadCall as exc:
            return web.json_response({"error": f"Invalid body request: {exc}"}, status=400)
        try:
            result = await self.executor.run(call)
        except ActionExecutionRejection as exc:
            return web.json_response(
                {"error": exc.message, "action_name": exc.action_name}, status=400
            )
        except ActionNotFoundException as exc:
            return web.json_response(
                {"error": exc.message, "action_name": exc.action_name}, status=404
            )
        except ActionMissingDomainException as exc:
            return web.json_response(
                {"error": exc.message, "action_name": exc.action_name}, status=449
            )
        return web.json_response(result.model_dump() if result else None)


async def _call_bytes(request: web.Request) -> bytes:
    body = await decoded_body(request, MAX_CALL_BYTES)
    if body[:1] in (b"{", b" ", b"\n", b"\r", b"\t") or "Content-Encoding" in request.headers:
        return body
    # Rasa deflates the body with COMPRESS_ACTION_SERVER_REQUEST; a proxy may have dropped
    # the Content-Encoding header on the way. Inflated under the same cap.
    try:
        return inflate(body, "deflate", MAX_CALL_BYTES)
    except BodyTooLarge:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_CALL_BYTES, actual_size=MAX_CALL_BYTES + 1
        ) from None
    except zlib.error:
        return body  # not deflate either: parse_call says what is wrong with it
