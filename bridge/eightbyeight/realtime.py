"""8x8's Real-time Metrics API: queue figures and agent names, best effort.

What 8x8 documents (developer.8x8.com/analytics/docs/cc-realtime-statistics, the reference
pages `/analytics/reference/cc-real-time-get-queue-metrics-by-id` and
`.../how-to-get-api-keys`, read in 8x8Cloud/public-developer-docs):
- Base URL `https://api.8x8.com/analytics/cc/v5/realtime-metrics` (US); `/eu`, `/au`, `/ca`
  before `/analytics` for the other regions. v1..v5 exist; v5 is current.
- OAuth 2 client credentials: `POST https://api.8x8.com/oauth/v2/token`, HTTP Basic
  `key:secret`, form `grant_type=client_credentials`; the answer's `access_token` is sent as
  `Authorization: Bearer`. The key and secret come from an Admin Console app with the
  "Contact Center Realtime Analytics" API — not the Chat Gateway's `x-api-key`.
- `X-Tenant-Info: <tenantId>` is required for a multi-tenant customer (400 without it).
- `GET /queues/{id}?metrics=a&metrics=b` answers the queue's `id`, `name` and
  `metrics: [{key, value}]`. Keys used here: `interactionsWaitInQueue.rt` ("count of
  interactions currently queued and awaiting agent connection") and
  `interactionsAvgWaitTime.int-30m` / `.today` ("time interactions spend in queue from entry
  until acceptance, abandonment, or diversion").
- `GET /agents?summary=true&page=0&size=N` answers `[{id, name, groupId, groupName}]`, every
  agent of the tenant; `size` is at most 1000, pages start at 0.

[INFERRED], not documented:
- The single-queue answer is one object in the reference but a one-element array in the
  guide's example [DOC-BUG]: both are read.
- Metric values come as numbers or as strings ("0"), and may be null: both are read, null is
  "unknown".
- `interactionsAvgWaitTime` is in milliseconds (the guide's totals example shows 29947.4; the
  other durations of the glossary are documented in milliseconds).
- The agent ids of `/agents` are the ids that Chat Gateway events carry (`MEMBERS_CHANGED`
  `data.id`; the guide's agent ids look like the gateway's, e.g. `agAD21EBR1RhuV2TNDivaaa`).
- The tenant for `X-Tenant-Info` is the bridge's `EIGHTBYEIGHT_TENANT_ID`.

These figures are a courtesy: every failure ends here, logged at WARNING without details that
could be secrets, and the caller says nothing about the wait. Calls are bounded (two attempts
within a couple of seconds), answers cached, and a failure is remembered for a while so that a
down API does not slow every event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from pydantic import SecretStr

from bridge.eightbyeight.auth import TokenAuth
from bridge.eightbyeight.transport import Caller, Transport
from bridge.errors import NotFound, UpstreamError
from bridge.retry import RetryPolicy

log = logging.getLogger(__name__)

PATH = "/analytics/cc/v5/realtime-metrics"
WAITING = "interactionsWaitInQueue.rt"
AVG_WAIT = ("interactionsAvgWaitTime.int-30m", "interactionsAvgWaitTime.today")
AGENT_PAGE_SIZE = 1000  # the documented maximum
MAX_AGENT_PAGES = 20


@dataclass(frozen=True)
class RealtimeConfig:
    """Where and how to reach the Real-time Metrics API, and how long answers are kept."""

    base_url: str  # ends with /realtime-metrics
    token_url: str
    client_id: SecretStr
    client_secret: SecretStr
    tenant_id: str | None = None
    request_timeout_s: float = 1.5
    total_budget_s: float = 2.5  # both attempts: the relay waits for this
    queue_ttl_s: float = 5.0  # 8x8 refreshes its figures every 5 s: nothing fresher exists
    agents_ttl_s: float = 300.0  # the agent list changes rarely...
    agents_miss_refresh_s: float = 30.0  # ...an unknown id refetches it, at most this often
    failure_ttl_s: float = 30.0  # after a failure, no call for this long


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """One queue, now: its name, how many wait, and the recent average wait."""

    queue_id: str
    name: str | None
    waiting: int | None
    avg_wait_ms: float | None


class RealtimeMetrics:
    """A cached, never-raising client of the Real-time Metrics API."""

    def __init__(
        self,
        config: RealtimeConfig,
        session: aiohttp.ClientSession | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._clock = clock
        self._transport = Transport(session=session)
        auth = _TenantAuth(
            TokenAuth(
                self._transport,
                config.token_url,
                config.client_id,
                config.client_secret,
                request_timeout_s=config.request_timeout_s,
            ),
            config.tenant_id,
        )
        policy = RetryPolicy(max_attempts=2, total_budget_s=config.total_budget_s)
        self._caller = Caller(
            self._transport, auth, request_timeout_s=config.request_timeout_s, policy=policy
        )
        self._queues: dict[str, tuple[float, QueueFigures | None]] = {}
        self._agents: dict[str, str] = {}
        self._agents_at: float | None = None
        self._down_until = 0.0
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._transport.close()

    async def queue(self, queue_id: str) -> QueueFigures | None:
        """The queue's figures (cached `queue_ttl_s`), or None when 8x8 cannot tell."""
        now = self._clock()
        cached = self._queues.get(queue_id)
        if cached is not None and now - cached[0] < self._config.queue_ttl_s:
            return cached[1]
        params = [("metrics", WAITING), *(("metrics", key) for key in AVG_WAIT)]
        body = await self._get("queue_metrics", f"/queues/{_segment(queue_id)}", params)
        figures = parse_queue(queue_id, body) if body is not None else None
        if body is not None:
            self._queues[queue_id] = (now, figures)
        return figures

    async def agent_name(self, agent_id: str) -> str | None:
        """The agent's display name, from the tenant's agent list (cached)."""
        if self._agents_stale(agent_id in self._agents):
            async with self._lock:  # one fetch for many concurrent joins
                if self._agents_stale(agent_id in self._agents):
                    await self._load_agents()
        return self._agents.get(agent_id)

    def _agents_stale(self, known: bool) -> bool:
        if self._agents_at is None:
            return True
        age = self._clock() - self._agents_at
        return age >= (self._config.agents_ttl_s if known else self._config.agents_miss_refresh_s)

    async def _load_agents(self) -> None:
        names: dict[str, str] = {}
        for page in range(MAX_AGENT_PAGES):
            params = [("summary", "true"), ("page", str(page)), ("size", str(AGENT_PAGE_SIZE))]
            body = await self._get("agents_summary", "/agents", params)
            if body is None:
                if self._agents_at is None or page > 0:
                    self._agents_at = self._clock()  # a failure waits like a miss
                return
            rows = parse_agents(body)
            names.update(rows)
            if len(rows) < AGENT_PAGE_SIZE:
                break
        self._agents, self._agents_at = names, self._clock()

    async def _get(self, operation: str, path: str, params: list[tuple[str, str]]) -> Any:
        """The parsed answer, or None after a failure (remembered for `failure_ttl_s`)."""
        if self._clock() < self._down_until:
            return None
        url = f"{self._config.base_url}{path}?{urlencode(params)}"  # metrics repeat: a list
        try:
            return await self._caller.call(operation, "GET", url)
        except NotFound:
            log.info("realtime_metrics_not_found", extra={"operation": operation})
            return None
        except UpstreamError as exc:
            self._down_until = self._clock() + self._config.failure_ttl_s
            log.warning(
                "realtime_metrics_unavailable",
                extra={"operation": operation, "error": type(exc).__name__, "status": exc.status},
            )
            return None


def parse_queue(queue_id: str, body: Any) -> QueueFigures | None:
    """Read a single-queue answer (an object, or a one-element array)."""
    if isinstance(body, list):
        body = next((item for item in body if isinstance(item, Mapping)), None)
    if not isinstance(body, Mapping):
        return None
    values = _metrics(body.get("metrics"))
    waiting = _number(values.get(WAITING))
    avg = next((v for k in AVG_WAIT if (v := _number(values.get(k))) is not None), None)
    name = body.get("name")
    return QueueFigures(
        queue_id=queue_id,
        name=name if isinstance(name, str) and name.strip() else None,
        waiting=int(waiting) if waiting is not None and waiting >= 0 else None,
        avg_wait_ms=avg if avg is not None and avg >= 0 else None,
    )


def parse_agents(body: Any) -> dict[str, str]:
    """`[{id, name, ...}]` as id -> name; rows without both are skipped."""
    out: dict[str, str] = {}
    for row in body if isinstance(body, list) else []:
        if isinstance(row, Mapping):
            agent_id, name = row.get("id"), row.get("name")
            if isinstance(agent_id, str) and isinstance(name, str) and name.strip():
                out[agent_id] = name.strip()
    return out


def _metrics(value: Any) -> dict[str, Any]:
    """`[{key, value}]` (the documented shape) or `{key: value}` (agents-in-queue-groups)."""
    if isinstance(value, Mapping):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value if isinstance(value, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            out[item["key"]] = item.get("value")
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and number not in (float("inf"), float("-inf")) else None


def _segment(value: str) -> str:
    return quote(value, safe="")


class _TenantAuth:
    """The bearer token, plus `X-Tenant-Info` for a multi-tenant customer."""

    def __init__(self, inner: TokenAuth, tenant_id: str | None) -> None:
        self._inner = inner
        self._tenant_id = tenant_id

    async def headers(self) -> dict[str, str]:
        headers = await self._inner.headers()
        if self._tenant_id:
            headers["X-Tenant-Info"] = self._tenant_id
        return headers

    async def rejected(self, error: UpstreamError, sent: Mapping[str, str]) -> bool:
        return await self._inner.rejected(error, sent)
