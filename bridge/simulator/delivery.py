"""Webhook delivery, signed and retried the way 8x8 does it (spec §3.1, §3.9, §6.2).

- Body: compact JSON, `content-type: application/json`, with the six `x-8x8-*` headers. The
  signature is `signature.sign` over `signature.detached_payload`: the very code the bridge
  verifies with.
- The event id (22 url-safe characters) stays the same across retries; `x-8x8-retry` counts
  0, 1, 2, ... and `x-8x8-transmission-time` is fresh on every attempt.
- A non-2xx answer, a redirect, a timeout or a connection error is a failure; the event is
  tried again after each of `delivery_retry_delays` and then given up (recorded as such).
- One lane per conversation: one event in flight, the next waits until it is delivered or
  given up, so a conversation's events arrive in order. Lanes run concurrently.
- The target is looked up on every attempt, so fixing the webhook URL rescues queued events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bridge.eightbyeight.signature import HEADER_SIGNATURE, SignedHeaders, detached_payload
from bridge.simulator.faults import Faults
from bridge.simulator.ids import now_ms, random_id
from bridge.simulator.keys import SigningKeys

log = logging.getLogger("bridge.simulator.delivery")

Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One delivery attempt of one event."""

    event_id: str
    event_type: str
    conversation_id: str | None
    retry: int
    status: int | None  # the receiver's HTTP status; None when there was no answer
    body: bytes
    headers: Mapping[str, str]
    url: str | None = None
    error: str | None = None  # why there was no answer (timeout, refused, injected, no URL)
    final: bool = False  # no attempt follows: delivered, or given up
    at_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def gave_up(self) -> bool:
        return self.final and not self.ok

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


def encode(event: Event) -> bytes:
    """Compact JSON, as 8x8 sends it (the checksum covers exactly these bytes)."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@dataclass(eq=False)
class QueuedEvent:
    conversation_id: str | None
    event_type: str
    body: bytes
    event_id: str = field(default_factory=random_id)
    attempted: asyncio.Event = field(default_factory=asyncio.Event)  # first attempt is over
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # delivered or given up
    delivered: bool = False


@dataclass(eq=False)
class _Lane:
    items: deque[QueuedEvent] = field(default_factory=deque)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Deliverer:
    def __init__(
        self,
        *,
        tenant_id: str,
        customer_id: str,
        retry_delays: tuple[float, ...],
        timeout_s: float,
        keys: SigningKeys,
        faults: Faults,
        target: Callable[[str | None], str | None],
        record: Callable[[Delivery], None],
    ) -> None:
        self._tenant_id = tenant_id
        self._customer_id = customer_id
        self._delays = retry_delays
        self._timeout_s = timeout_s
        self._keys = keys
        self._faults = faults
        self._target = target
        self._record = record
        self._lanes: dict[str, _Lane] = {}
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": "handoff-bridge-8x8-simulator"},
        )

    async def close(self) -> None:
        """Stop delivering; what is still queued is dropped (and settled, so nobody waits)."""
        lanes, self._lanes = list(self._lanes.values()), {}
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
        await asyncio.gather(*(lane.task for lane in lanes if lane.task), return_exceptions=True)
        for lane in lanes:
            for item in lane.items:
                item.attempted.set()
                item.settled.set()
        self._pending = 0
        self._idle.set()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- queueing ---

    def enqueue(self, conversation_id: str, event: Event, *, hold: bool = False) -> QueuedEvent:
        """Queue `event` behind the conversation's earlier events. With `hold`, the lane waits
        for release() (a create answers its 202 first)."""
        item = QueuedEvent(conversation_id, str(event.get("eventType")), encode(event))
        lane = self._lanes.get(conversation_id)
        if lane is None:
            lane = self._lanes[conversation_id] = _Lane()
            lane.gate.set()
            lane.task = asyncio.create_task(
                self._drain(conversation_id, lane), name=f"sim-delivery-{conversation_id}"
            )
        if hold:
            lane.gate.clear()
        lane.items.append(item)
        self._pending += 1
        self._idle.clear()
        return item

    def release(self, conversation_id: str) -> None:
        lane = self._lanes.get(conversation_id)
        if lane is not None:
            lane.gate.set()

    def held(self, conversation_id: str) -> bool:
        """Whether the conversation's lane waits for release(): it sends nothing until then."""
        lane = self._lanes.get(conversation_id)
        return lane is not None and not lane.gate.is_set()

    @property
    def pending(self) -> int:
        """Events queued or in flight."""
        return self._pending

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return self._delays

    def set_retry_delays(self, delays: tuple[float, ...]) -> None:
        """A new schedule (1 + len(delays) attempts), for events whose retries start later."""
        if any(not (d >= 0 and math.isfinite(d)) for d in delays):
            raise ValueError("retry delays must be non-negative numbers")
        self._delays = tuple(delays)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def _drain(self, key: str, lane: _Lane) -> None:
        while lane.items:
            await lane.gate.wait()
            item = lane.items[0]
            try:
                await self._deliver(item)
            except Exception:
                # A bug here must not stall the conversation's lane forever.
                log.exception("sim_delivery_error", extra={"event_id": item.event_id})
            lane.items.popleft()
            item.attempted.set()
            item.settled.set()
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()
        # No await since the loop test: nothing can have been queued on this lane meanwhile.
        if self._lanes.get(key) is lane:
            del self._lanes[key]

    async def _deliver(self, item: QueuedEvent) -> None:
        last = len(self._delays)
        for retry in range(last + 1):
            if retry:
                await asyncio.sleep(self._delays[retry - 1])
            url = self._target(item.conversation_id)
            delivery = await self.attempt(item, retry, url, final=retry == last)
            item.attempted.set()
            if delivery.ok:
                item.delivered = True
                return
        log.warning(
            "sim_delivery_gave_up",
            extra={"event_type": item.event_type, "event_id": item.event_id,
                   "conversation": item.conversation_id, "attempts": last + 1},
        )  # fmt: skip

    # --- one attempt ---

    async def attempt(
        self, item: QueuedEvent, retry: int, url: str | None, *, final: bool
    ) -> Delivery:
        """Sign and send `item` once; record and return what happened."""
        signed = SignedHeaders(self._customer_id, item.event_id, retry, self._tenant_id, now_ms())
        headers = {
            "Content-Type": "application/json",
            "Cache-Control": "no-cache",
            **signed.as_headers(),
            HEADER_SIGNATURE: self._keys.sign(detached_payload(item.body, signed)),
        }
        status: int | None = None
        if self._faults.take("webhook_delivery") is not None:
            error: str | None = "injected delivery failure (nothing was sent)"
        elif url is None:
            error = "no webhook URL is set"
        else:
            status, error = await self._post(url, item.body, headers)
        ok = status is not None and 200 <= status < 300
        delivery = Delivery(
            event_id=item.event_id,
            event_type=item.event_type,
            conversation_id=item.conversation_id,
            retry=retry,
            status=status,
            body=item.body,
            headers=headers,
            url=url,
            error=error,
            final=ok or final,
            at_ms=signed.transmission_time_ms,
        )
        self._record(delivery)
        return delivery

    async def _post(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int | None, str | None]:
        if self._session is None:
            return None, "the simulator is not running"
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                await resp.read()
                return resp.status, None
        except TimeoutError:
            return None, f"no answer within {self._timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    async def send_once(self, url: str, event: Event) -> Delivery:
        """One attempt, no lane and no retry (WEB_HOOK_VERIFY: its caller wants the answer)."""
        item = QueuedEvent(None, str(event.get("eventType")), encode(event))
        return await self.attempt(item, 0, url, final=True)
