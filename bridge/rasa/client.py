"""Rasa's HTTP API, the slice the bridge uses to reach the user (rasa-integration.md §2).

Agent text goes in as a `bot` event with `execute_side_effects=true` (no NLU, works while
paused, stays in the transcript); state changes go in as `EXTERNAL_*` intents through
`trigger_intent`, so the bot's rules can react. Each push is stamped with a marker (the 8x8
event id and the effect's index) that `has_marker` can find in the tracker afterwards: after an
ambiguous failure the relay looks before pushing again, so the user sees a message once.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from pydantic import SecretStr
from yarl import URL

from bridge.errors import PermanentUpstreamError, RetryableUpstreamError, UpstreamError
from bridge.ids import SenderId
from bridge.rasa.pushline import BadAnswer, BadURL, PushLine

log = logging.getLogger(__name__)

# The entity / metadata key that carries our delivery marker into the tracker.
MARKER_KEY = "handoff_event_id"


@dataclass(frozen=True, slots=True)
class BotMessage:
    """An agent's message as a Rasa `bot` event, stamped with its delivery marker."""

    text: str | None
    marker: str
    agent_name: str | None = None
    data: dict[str, Any] | None = None


class RasaClient:
    """Pushes agent events into Rasa conversations. The pushes (`push_bot_messages`, the hot
    path) go through a `PushLine` of their own; every other call through one aiohttp session.
    Both are owned here. `ssl_context`: for an https Rasa whose certificate the default
    context does not trust (the tests' own CA)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: SecretStr | None = None,
        output_channel: str = "latest",
        timeout_s: float = 15.0,
        session: aiohttp.ClientSession | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._output_channel = output_channel
        # Rasa serialises work per conversation with a lock that lives up to 60 s; a push can
        # legitimately wait behind a user turn, so the timeout is generous but bounded.
        self._timeout_s = timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._owns_session = session is None
        self._ssl_context = ssl_context
        self._line: PushLine | None = None
        self._events_query: str | None = None  # the pushes' query string (`_events_target`)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Rasa's HTTP API sets no cookies: a jar would only be searched on every push.
            self._session = aiohttp.ClientSession(
                timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    def _pushes(self) -> PushLine:
        if self._line is None:
            self._line = PushLine(
                self._base, timeout_s=self._timeout_s, ssl_context=self._ssl_context
            )
        return self._line

    async def close(self) -> None:
        if self._line is not None:
            await self._line.close()
            self._line = None
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _params(self, **extra: str) -> dict[str, str]:
        params = dict(extra)
        if self._token is not None:
            params["token"] = self._token.get_secret_value()
        return params

    def _url(self, sender: SenderId, tail: str) -> str:
        return f"{self._base}/conversations/{quote(sender, safe='')}/{tail}"

    def _events_target(self, sender: SenderId) -> str:
        """The push's path (under the base URL's) and query, the query encoded once: one push
        per agent message goes through here. It holds the token: never logged."""
        if self._events_query is None:
            self._events_query = urlencode(
                self._params(
                    output_channel=self._output_channel, execute_side_effects="true",
                    include_events="NONE",
                )
            )  # fmt: skip
        return f"/conversations/{quote(sender, safe='')}/tracker/events?{self._events_query}"

    async def push_bot_message(
        self,
        sender: SenderId,
        text: str | None,
        *,
        marker: str,
        agent_name: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Show an agent's message to the user, through the user's own channel."""
        await self.push_bot_messages(sender, [BotMessage(text, marker, agent_name, data)])

    async def push_bot_messages(self, sender: SenderId, messages: Sequence[BotMessage]) -> None:
        """Show several agent messages to the user in one call, in order. Rasa 3.6 appends the
        list to the tracker, sends each `bot` event to the output channel in list order, then
        saves the tracker once; each event keeps its own marker for `has_marker`."""
        body = json.dumps([_bot_event(m) for m in messages]).encode("utf-8")
        # OSError: timeouts, resets, refusals, TLS. A BadURL stays retryable, as aiohttp's
        # InvalidURL was: the relay's budget, not this call, decides when to give up.
        try:
            status, head = await self._pushes().post(self._events_target(sender), body)
        except (OSError, BadAnswer, BadURL) as exc:
            raise RetryableUpstreamError(f"Rasa unreachable: {type(exc).__name__}") from exc
        if status >= 400:
            raise error_for_status(status, head.decode("utf-8", "replace")[:200])

    async def trigger_intent(
        self, sender: SenderId, intent: str, entities: dict[str, str], *, marker: str
    ) -> None:
        """Trigger an `EXTERNAL_*` intent so the bot's rules react (and reply on the channel)."""
        body = {"name": intent, "entities": {**entities, MARKER_KEY: marker}}
        params = self._params(output_channel=self._output_channel, include_events="NONE")
        await self._post(self._url(sender, "trigger_intent"), body, params)

    async def has_marker(self, sender: SenderId, marker: str) -> bool:
        """Whether a push stamped with `marker` already reached the sender's tracker."""
        url = self._url(sender, "tracker")
        data = await self._request("GET", url, None, self._params(include_events="ALL"))
        events = data.get("events") if isinstance(data, dict) else None
        return any(_event_has_marker(e, marker) for e in reversed(events or []))

    async def version(self) -> dict[str, Any]:
        data = await self._request("GET", f"{self._base}/version", None, {})
        return data if isinstance(data, dict) else {}

    async def status(self) -> dict[str, Any]:
        """Rasa's `/status` (the loaded model); needs the token when Rasa has one."""
        data = await self._request("GET", f"{self._base}/status", None, self._params())
        return data if isinstance(data, dict) else {}

    async def _post(self, url: str, body: Any, params: dict[str, str]) -> None:
        # include_events=NONE keeps Rasa's answer small; we do not read it either way.
        await self._request("POST", url, body, params, read=False)

    async def _request(
        self, method: str, url: str | URL, body: Any, params: dict[str, str] | None,
        *, read: bool = True,
    ) -> Any:  # fmt: skip
        """`params`: None when `url` carries its query already."""
        data = None if body is None else json.dumps(body).encode("utf-8")
        try:
            async with self._http().request(
                method, url, data=data, headers=_JSON if data is not None else None,
                params=params, timeout=self._timeout,
            ) as resp:  # fmt: skip
                if resp.status >= 400:
                    raise error_for_status(resp.status, (await resp.text())[:200])
                if read and resp.content_type == "application/json":
                    return await resp.json()
                await resp.read()  # drain, so the connection is reused
                return None
        except UpstreamError:
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryableUpstreamError(f"Rasa unreachable: {type(exc).__name__}") from exc


_JSON = {"Content-Type": "application/json"}


def is_retryable_status(status: int) -> bool:
    """401/403 may be a token rotated on the Rasa side, 404 on a conversation route is "intent
    not in the domain" (a deploy in progress), 409 Rasa's conversation lock: an operator (or
    time) can fix those, so they stay retryable until the relay's budget runs out. Other 4xx
    cannot succeed by retrying."""
    return status >= 500 or status in (401, 403, 404, 408, 409, 429)


def error_for_status(status: int, detail: str) -> UpstreamError:
    message = f"Rasa answered {status}"
    if is_retryable_status(status):
        return RetryableUpstreamError(message, status=status, code=detail)
    return PermanentUpstreamError(message, status=status, code=detail)


def _bot_event(message: BotMessage) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": "bot",
        "text": message.text,
        "metadata": {
            "handoff": {"source": "8x8", "agent": message.agent_name, MARKER_KEY: message.marker}
        },
    }
    if message.data:
        event["data"] = message.data
    return event


def _event_has_marker(event: Any, marker: str) -> bool:
    if not isinstance(event, dict):
        return False
    if event.get("event") == "bot":
        handoff = (event.get("metadata") or {}).get("handoff") or {}
        return isinstance(handoff, dict) and handoff.get(MARKER_KEY) == marker
    if event.get("event") == "user":
        entities = (event.get("parse_data") or {}).get("entities") or []
        return any(
            isinstance(e, dict) and e.get("entity") == MARKER_KEY and e.get("value") == marker
            for e in entities
        )
    return False
