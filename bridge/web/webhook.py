"""POST /8x8/events: size limit -> signature -> JSON -> atomic claim-and-enqueue -> 2xx.

The door does as little as it can: it verifies, deduplicates and durably enqueues, and answers
8x8 at once; the relay delivers asynchronously and in order. Every answer is JSON with a short
reason; no input produces a 500 (bridge-contract.md, "HTTP routes").
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from bridge.eightbyeight.events import RELAYED_KINDS, EventKind, parse_event
from bridge.eightbyeight.signature import HEADER_EVENT, SignedHeaders
from bridge.errors import SignatureError, StoreUnavailable
from bridge.ids import EventId
from bridge.metrics import Metrics
from bridge.store.base import Store, partition_of

log = logging.getLogger(__name__)


class Verifier(Protocol):
    async def verify(self, body: bytes, headers: Mapping[str, str]) -> SignedHeaders: ...


@dataclass
class WebhookDoor:
    """Everything the webhook route needs, passed in (no globals)."""

    store: Store
    metrics: Metrics
    verifier: Verifier | None  # None when EIGHTBYEIGHT_VERIFY_SIGNATURES=false
    max_body_bytes: int
    dedupe_ttl_s: int
    # Wakes this process's relay for a partition (a fast path; other processes poll).
    kick: Callable[[int], None] = lambda partition: None
    is_transient_key_error: Callable[[SignatureError], bool] = lambda exc: False

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        self.metrics.webhook_responses.labels(str(response.status)).inc()
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        body = await _read_limited(request, self.max_body_bytes)
        if body is None:
            return _answer(413, "body too large", limit=self.max_body_bytes)
        obj = _json_object(body)
        if isinstance(obj, dict) and obj.get("eventType") == "WEB_HOOK_VERIFY":
            # 8x8's check of a new webhook must pass even unsigned (contract); never enqueued.
            self.metrics.events_received.labels("WEB_HOOK_VERIFY").inc()
            return _answer(200, "verified")
        refused = await self._verify(body, request.headers)
        if refused is not None:
            return refused
        if obj is None:
            return _answer(400, "body is not valid JSON")
        if not isinstance(obj, dict):
            return _answer(400, "body is not a JSON object")
        return await self._accept(obj, body, request.headers)

    async def _verify(self, body: bytes, headers: Mapping[str, str]) -> web.Response | None:
        if self.verifier is None:
            return None
        try:
            await self.verifier.verify(body, headers)
        except SignatureError as exc:
            if self.is_transient_key_error(exc):
                log.warning("signature_key_unavailable", extra={"reason": str(exc)})
                return _answer(503, "signing key temporarily unavailable")
            self.metrics.signature_failures.inc()
            log.warning("signature_refused", extra={"reason": str(exc)})
            return _answer(401, "invalid signature", reason=str(exc))
        return None

    async def _accept(
        self, obj: dict[str, Any], body: bytes, headers: Mapping[str, str]
    ) -> web.Response:
        event = parse_event(obj)
        self.metrics.events_received.labels(_type_label(event.raw_type, event.kind)).inc()
        if event.kind not in RELAYED_KINDS:
            self.metrics.events_ignored.labels(event.kind.value).inc()
            return _answer(200, "ignored", kind=event.kind.value)
        if event.conversation_id is None:
            return _answer(400, "event has no conversationId")
        event_id = EventId(headers.get(HEADER_EVENT) or _body_id(body))
        payload = event.to_json()
        if not _encodable(payload, event_id):
            # JSON allows lone surrogates ("\ud83d"); UTF-8, and so Redis, does not.
            return _answer(400, "body has text that is not valid Unicode")
        partition = partition_of(event.conversation_id, self.store.partitions)
        try:
            fresh = await self.store.enqueue_event(partition, event_id, payload, self.dedupe_ttl_s)
        except StoreUnavailable:
            log.error(
                "enqueue_failed",
                extra={"event_id": event_id, "conversation": event.conversation_id},
            )
            return _answer(503, "cannot accept the event right now; retry")
        if not fresh:
            self.metrics.events_duplicate.inc()
            return _answer(200, "duplicate")
        self.kick(partition)
        log.info(
            "event_accepted",
            extra={
                "event_id": event_id,
                "conversation": event.conversation_id,
                "kind": event.kind.value,
            },
        )
        return _answer(200, "accepted")


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it exceeds `limit` (declared or actual)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _json_object(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[…" bombs
        return None


def _encodable(*texts: str) -> bool:
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _body_id(body: bytes) -> str:
    # Without x-8x8-event-id (signatures off, a test client), the body identifies the event:
    # 8x8's retries resend the same body.
    return "body-" + hashlib.sha256(body).hexdigest()[:32]


_KNOWN_TYPES = frozenset(
    {
        "QUEUED", "AGENT_JOINED", "AGENT_LEFT", "TRANSFER", "TEXT", "CONVERSATION_UPDATE",
        "MEMBERS_CHANGED", "MESSAGE", "ACTIVITY", "WEB_HOOK_VERIFY",
    }
)  # fmt: skip


def _type_label(raw_type: str, kind: EventKind) -> str:
    # Metric labels must stay bounded: an attacker-chosen eventType is counted as "other".
    return raw_type if raw_type in _KNOWN_TYPES else "other"


def _answer(status: int, result: str, **extra: Any) -> web.Response:
    return web.json_response({"result": result, **extra}, status=status)
