"""The ceiling: the least any relay from an 8x8 webhook into Rasa on Redis must do per event.

A bare aiohttp handler: read the body, parse it, one Redis GET (the conversation's sender),
one POST of the message into the Rasa stand-in, answer 200. No signature check, no dedupe, no
durable queue, no ordering across requests beyond what the sender gives it.

    python -m bench.ceiling PORT REDIS_URL KEY_PREFIX RASA_URL
"""

from __future__ import annotations

import gc
import json
import sys
from typing import Any
from urllib.parse import quote

import aiohttp
import redis.asyncio as aioredis
from aiohttp import web

PARAMS = {"output_channel": "latest", "execute_side_effects": "true", "include_events": "NONE"}


def ceiling_key(prefix: str, conversation_id: str) -> str:
    return f"{prefix}ceiling:{conversation_id}"


def _text(event: dict[str, Any]) -> Any:
    # Chat API v2 TEXT carries `message`; a Chat Gateway MESSAGE carries `data.text`.
    return event["message"] if "message" in event else event["data"]["text"]


def ceiling_app(redis_url: str, prefix: str, rasa_url: str) -> web.Application:
    app = web.Application()
    redis = aioredis.from_url(redis_url, decode_responses=True)
    http: list[aiohttp.ClientSession] = []

    async def relay(request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        sender = str(await redis.get(ceiling_key(prefix, event["conversationId"])))
        push = {"event": "bot", "text": _text(event), "metadata": {"handoff": {"source": "8x8"}}}
        url = f"{rasa_url}/conversations/{quote(sender, safe='')}/tracker/events"
        async with http[0].post(url, json=[push], params=PARAMS) as answer:
            await answer.read()
        return web.json_response({"result": "accepted"})

    async def lifecycle(_app: web.Application) -> Any:
        http.append(aiohttp.ClientSession())
        yield
        await http[0].close()
        await redis.aclose()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_post("/8x8/events", relay)
    app.router.add_get("/ready", lambda _r: _ok())
    return app


async def _ok() -> web.Response:
    return web.json_response({"ready": True})


if __name__ == "__main__":
    port, redis_url, prefix, rasa_url = sys.argv[1:5]
    # The startup heap out of the collector's walks, as `serve` does (bridge/web/server.py):
    # the ceiling is the best a bare relay does, long GC pauses included in neither.
    gc.collect()
    gc.freeze()
    # And its young objects collected as seldom as serve's (YOUNG_COLLECTION_THRESHOLD in
    # bridge/web/server.py, not imported: the ceiling loads none of the bridge).
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    web.run_app(
        ceiling_app(redis_url, prefix, rasa_url),
        host="127.0.0.1", port=int(port), print=None, access_log=None,
    )  # fmt: skip
