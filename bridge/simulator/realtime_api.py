"""8x8's Real-time Metrics API, the two calls the bridge makes, computed from the desk's state
(see `bridge/eightbyeight/realtime.py` for what 8x8 documents and what is inferred).

- `GET {PATH}/queues/{id}?metrics=...`: the queue's id, name and the requested metrics (all
  known ones when none is named), `[{key, value}]`. `interactionsWaitInQueue.rt` counts the
  conversations waiting in the queue now; `interactionsAvgWaitTime.*` (ms) averages the waits
  of the queue's interactions an agent accepted, null when none was. `overrides` (per queue,
  set by tests or the desk) replace computed values, to play a busy contact center.
- `GET {PATH}/agents?summary=true`: every agent who ever accepted a chat here, plus the ones
  `Simulator.add_agent` lists, as `[{id, name, groupId, groupName}]`, paged by `page`/`size`.
  Without `summary=true` 8x8 requires `metrics`; the simulator answers 400, as it serves no
  agent metrics.

Credentials are their own (`rtm_client_id` / `rtm_client_secret` at the shared token
endpoint); chat tokens are refused here and these tokens there. A wrong `X-Tenant-Info` is
8x8's documented 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.errors import ApiProblem
from bridge.simulator.events import QUEUE_NAMES, queue_name
from bridge.simulator.routing import Route
from bridge.simulator.wire import respond

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator

PATH = "/analytics/cc/v5/realtime-metrics"
WAITING = "interactionsWaitInQueue.rt"
AVG_WAIT = ("interactionsAvgWaitTime.int-15m", "interactionsAvgWaitTime.int-30m",
            "interactionsAvgWaitTime.today")  # fmt: skip
KNOWN = (WAITING, *AVG_WAIT)
MAX_PAGE_SIZE = 1000


def _bad(message: str) -> ApiProblem:
    return ApiProblem(400, {"message": f"Bad request: {message}"}, content_type="application/json")


class RealtimeApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[Route]:
        return [
            Route("GET", f"{PATH}/queues/{{queue_id}}", self.queue, "realtime", "chat-v2", "realtime"),
            Route("GET", f"{PATH}/agents", self.agents, "realtime", "chat-v2", "realtime"),
        ]  # fmt: skip

    def _check_tenant(self, request: web.Request) -> None:
        tenant = request.headers.get("X-Tenant-Info")
        if tenant is not None and tenant != self.sim.config.tenant_id:
            raise _bad("Invalid value for X-Tenant-Info header.")

    async def queue(self, request: web.Request) -> web.StreamResponse:
        self._check_tenant(request)
        queue_id = request.match_info["queue_id"]
        if queue_id not in self._known_queues():
            raise errors.not_found("chat-v2", "realtime", "Queue", queue_id)
        wanted = request.query.getall("metrics", []) or list(KNOWN)
        values = {**self._computed(queue_id), **self.sim.realtime_overrides.get(queue_id, {})}
        metrics = [{"key": key, "value": values.get(key)} for key in wanted]
        return respond({"id": queue_id, "name": queue_name(queue_id), "metrics": metrics})

    async def agents(self, request: web.Request) -> web.StreamResponse:
        self._check_tenant(request)
        if request.query.get("summary", "").lower() != "true":
            raise _bad("the simulator serves agent summaries only (summary=true)")
        page, size = _int(request.query.get("page"), 0), _int(request.query.get("size"), 100)
        if size < 1 or size > MAX_PAGE_SIZE:
            raise _bad("Field 'size' must be less than or equal to 1000")
        if page < 0:
            raise _bad("Field 'page' must be greater than or equal to 0")
        rows = [
            {"id": a.id, "name": a.name, "groupId": "100", "groupName": "ungroup"}
            for a in self.sim.agent_directory()
        ]
        return respond(rows[page * size : (page + 1) * size])

    def _known_queues(self) -> set[str]:
        return (
            set(QUEUE_NAMES)
            | {self.sim.config.queue_id}
            | {c.queue_id for c in self.sim.provisioning.channels.values()}
            | {c.queue_id for c in self.sim.conversations.values()}
            | set(self.sim.realtime_overrides)
        )

    def _computed(self, queue_id: str) -> dict[str, Any]:
        convs = self.sim.conversations.values()
        waiting = sum(
            1 for c in convs if c.queue_id == queue_id and c.interaction and c.agent is None
        )
        waits = [
            i.accepted_ms - i.start_ms
            for c in convs
            for i in c.interactions
            if i.queue_id == queue_id and i.accepted_ms is not None
        ]
        avg = sum(waits) / len(waits) if waits else None
        return {WAITING: waiting, **dict.fromkeys(AVG_WAIT, avg)}


def _int(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise _bad(f"'{value[:20]}' is not a number") from None
