"""A recording stand-in for the slice of Rasa's HTTP API the relay uses, over real loopback HTTP.

It keeps a tracker per conversation (the events the bridge pushed), so the relay's "look in the
tracker before pushing again" path runs against real responses. A `tracker/events` call with
several `bot` events is recorded as Rasa 3.6 handles it (appended, and sent to the user's
channel, in list order): each event is a push of its own in `pushes`, in order (the benchmark
stamps and checks each one); `posts` keeps how many events each call carried. Faults: answer a status for a
while (`down`), accept a push and then drop the connection (`lose_next_responses`), or keep one
sender's calls waiting until released (`hold`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Pushed:
    sender: str
    kind: str  # "bot" | "intent"
    text: str | None
    intent: str | None
    entities: dict[str, Any]
    marker: str | None


@dataclass
class Hold:
    """One sender's calls wait until `released` is set; `arrived` is set by the first."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class RasaStandIn:
    intents: set[str] = field(
        default_factory=lambda: {
            "EXTERNAL_handoff_queued", "EXTERNAL_agent_joined", "EXTERNAL_agent_left", "EXTERNAL_handoff_failed",
            "EXTERNAL_handoff_queue_reminder", "EXTERNAL_handoff_queue_timeout",
            "EXTERNAL_handoff_agent_silent", "EXTERNAL_handoff_user_silent",
        }
    )  # fmt: skip
    token: str | None = None
    model_loaded: bool = True  # False: /status answers 409 "No agent loaded", as Rasa 3.6 does
    down_status: int | None = None  # answer this to every push while set
    lose_next_responses: int = 0  # accept the push, then drop the connection without answering
    delay_s: float = 0.0
    gate: asyncio.Event | None = None  # while given and not set, every call waits (Rasa stalled)
    holds: dict[str, Hold] = field(default_factory=dict)  # by sender: its calls wait (`hold`)
    pushes: list[Pushed] = field(default_factory=list)
    posts: list[tuple[str, int]] = field(default_factory=list)  # (sender, events) per call
    trackers: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    requests: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/conversations/{sender}/tracker/events", self._events)
        app.router.add_post("/conversations/{sender}/trigger_intent", self._trigger)
        app.router.add_get("/conversations/{sender}/tracker", self._tracker)
        app.router.add_get("/version", self._version)
        app.router.add_get("/status", self._status)
        return app

    def hold(self, sender: str) -> Hold:
        """Keep the sender's calls waiting (every other sender's go on) until released."""
        self.holds[sender] = Hold()
        return self.holds[sender]

    def texts(self, sender: str) -> list[str]:
        return [p.text or "" for p in self.pushes if p.sender == sender and p.kind == "bot"]

    def timeline(self, sender: str) -> list[str]:
        """What the user saw, in order: texts and intents."""
        return [
            p.text or "" if p.kind == "bot" else f"#{p.intent}"
            for p in self.pushes
            if p.sender == sender
        ]

    async def _version(self, _request: web.Request) -> web.Response:
        return web.json_response({"version": "3.6.21", "minimum_compatible_version": "3.6.0"})

    async def _status(self, request: web.Request) -> web.Response:
        if self.token is not None and request.query.get("token") != self.token:
            return web.json_response({"message": "unauthorized"}, status=401)
        if not self.model_loaded:
            return web.json_response({"message": "No agent loaded.", "code": 409}, status=409)
        return web.json_response(
            {"model_file": "models/stand-in.tar.gz", "num_active_training_jobs": 0}
        )

    async def _gate(self, request: web.Request) -> web.Response | None:
        self.requests += 1
        if self.token is not None and request.query.get("token") != self.token:
            return web.json_response({"message": "unauthorized"}, status=401)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.gate is not None:
            await self.gate.wait()
        held = self.holds.get(request.match_info.get("sender", ""))
        if held is not None:
            held.arrived.set()
            await held.released.wait()
        if self.down_status is not None:
            return web.json_response({"message": "down"}, status=self.down_status)
        return None

    async def _maybe_lose(self, request: web.Request) -> None:
        if self.lose_next_responses > 0:
            self.lose_next_responses -= 1
            assert request.transport is not None
            request.transport.close()  # the push was applied; the answer never arrives
            raise asyncio.CancelledError

    async def _events(self, request: web.Request) -> web.StreamResponse:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        sender = request.match_info["sender"]
        body = await request.json()
        events = body if isinstance(body, list) else [body]
        self.posts.append((sender, len(events)))
        for event in events:
            self.trackers[sender].append(event)
            marker = ((event.get("metadata") or {}).get("handoff") or {}).get("handoff_event_id")
            self.pushes.append(
                Pushed(sender, "bot", event.get("text"), None, event.get("data") or {}, marker)
            )
        await self._maybe_lose(request)
        return web.json_response(self._state(request, sender))

    async def _trigger(self, request: web.Request) -> web.StreamResponse:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        sender = request.match_info["sender"]
        body = await request.json()
        name = body.get("name")
        if not name:
            return web.json_response({"message": "Name of the intent not provided"}, status=400)
        if name not in self.intents:
            return web.json_response({"message": f"The intent {name} does not exist"}, status=404)
        entities = body.get("entities") or {}
        self.trackers[sender].append(
            {
                "event": "user",
                "text": f"EXTERNAL: {name}",
                "parse_data": {
                    "intent": {"name": name},
                    "entities": [{"entity": k, "value": v} for k, v in entities.items()],
                },
            }
        )
        self.pushes.append(
            Pushed(sender, "intent", None, name, entities, entities.get("handoff_event_id"))
        )
        await self._maybe_lose(request)
        return web.json_response({"tracker": self._state(request, sender)})

    def _state(self, request: web.Request, sender: str) -> dict[str, Any]:
        """The tracker state as Rasa answers a push, honouring include_events like Rasa."""
        if request.query.get("include_events") == "NONE":
            return {"sender_id": sender}
        return {"sender_id": sender, "events": self.trackers[sender]}

    async def _tracker(self, request: web.Request) -> web.Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        sender = request.match_info["sender"]
        return web.json_response({"sender_id": sender, "events": self.trackers.get(sender, [])})
