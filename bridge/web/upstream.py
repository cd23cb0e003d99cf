"""The bot's own action server, behind the bridge (BRIDGE_ACTION_UPSTREAM).

Rasa has one action endpoint. Pointing it at the bridge must not cost a bot its own actions,
so every call for an action the bridge does not own is passed on unchanged, and the upstream's
answer (status, body, content type) comes back unchanged: rasa-sdk's 200, 400 rejection and
404 reach Rasa as if Rasa had called that server itself. When the upstream cannot be reached,
Rasa gets a 502 (504 on a timeout) in the same `{"error", "action_name"}` shape.
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

_PASSED_HEADERS = ("Content-Type",)


def _actions_url(webhook_url: str) -> str:
    """rasa-sdk serves GET /actions next to POST /webhook."""
    base, _, _ = webhook_url.split("?", 1)[0].rpartition("/webhook")
    return f"{base}/actions" if base else webhook_url.rstrip("/") + "/actions"


class Upstream:
    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def run(self, body: bytes, headers: Any, action: str) -> web.Response:
        """POST the action call as Rasa sent it; answer what the upstream answered."""
        sent = {k: headers[k] for k in _PASSED_HEADERS if k in headers}
        try:
            async with self._http().post(self.url, data=body, headers=sent) as resp:
                answer = await resp.read()
                passed = {k: resp.headers[k] for k in _PASSED_HEADERS if k in resp.headers}
                return web.Response(status=resp.status, body=answer, headers=passed)
        except TimeoutError:
            return _failed(504, action, "the bot's action server did not answer in time")
        except aiohttp.ClientError as exc:
            log.warning("action_upstream_unreachable", extra={"detail": type(exc).__name__})
            return _failed(502, action, "the bot's action server cannot be reached")

    async def list_actions(self) -> list[Any]:
        """The upstream's GET /actions, or [] (logged) when it cannot say."""
        try:
            async with self._http().get(_actions_url(self.url)) as resp:
                listed = await resp.json(content_type=None) if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError, ValueError):
            listed = None
        if not isinstance(listed, list):
            log.warning("action_upstream_list_failed")
            return []
        return listed


def _failed(status: int, action: str, why: str) -> web.Response:
    return web.json_response({"error": why, "action_name": action}, status=status)
