"""POST /8x8/events: size limit -> signature -> JSON -> claim -> enqueue -> 2xx.

The door does as little as it can: it verifies, deduplicates and durably enqueues, and answers
8x8 at once; the relay delivers asynchronously and in order. Every answer is JSON with a short
reason; no input produces a 500 (bridge-contract.md, "HTTP routes").

One signature, one use. 8x8 signs the body's CRC32 (which anyone can match) and no
conversation, so a captured signature could carry a forged body. Every verified event id is
therefore claimed once for the whole deployment with the SHA-256 of its body: the same id with
another body is refused like a bad signature and logged as an attack.

Claim and enqueue (`Store.admit_event`) are one atomic step on a single Redis, where the claim
is done at once, and two on a Cluster (different hash slots), where a crash between them loses
nothing: the claim stays "pending" until the relay has delivered the event (and settles it),
8x8 gets no 2xx before the enqueue and retries, and a retry that finds its own body's pending
claim redoes the enqueue, which appends at most once per event id
(docs/security-webhook.md). When this process's consumer of the partition rests, the enqueue also takes the
relay's first step for the entry (`Relay.plan`, bridge/relay/begun.py): one round trip fewer
before the push.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

from bridge.eightbyeight.events import RELAYED_KINDS, ChatEvent, EventKind, parse_event
from bridge.eightbyeight.signature import HEADER_EVENT, SignedHeaders
from bridge.errors import SignatureError, StaleClaim, StoreUnavailable
from bridge.ids import ConversationId, EventId
from bridge.metrics import CounterByLabel, Metrics
from bridge.store.base import Begin, Claim, Enqueued, Store, partition_of

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
    # Hands what it appended (and the event, parsed) to this process's relay and wakes the
    # partition's consumer, which may then work it without reading it back; an enqueue into a
    # partition another process consumes rings the doorbell, which wakes that process.
    hand: Callable[[int, Enqueued, ChatEvent, Begin | None], None] = lambda p, e, ev, b: None
    # The relay's first step for the entry, for the enqueue to take with it when the entry will
    # go straight to this process's resting consumer (`Relay.plan`); None: the enqueue alone.
    plan: Callable[[int, EventId, ChatEvent], Begin | None] = lambda p, event_id, event: None
    # A plan made and not handed (a duplicate, a refusal, a failure): the relay may plan again.
    unplan: Callable[[Begin | None], None] = lambda begin: None
    owns: Callable[[int], bool] = lambda partition: True
    is_transient_key_error: Callable[[SignatureError], bool] = lambda exc: False
    # Told of every 503: 8x8 may give up on the event, so recovery should look soon.
    on_unavailable: Callable[[], None] = lambda: None
    # Counted on every request: the labelled children are looked up once each.
    _responses: CounterByLabel = field(init=False, repr=False)
    _received: CounterByLabel = field(init=False, repr=False)
    _ignored: CounterByLabel = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._responses = CounterByLabel(self.metrics.webhook_responses)
        self._received = CounterByLabel(self.metrics.events_received)
        self._ignored = CounterByLabel(self.metrics.events_ignored)

    async def handle(self, request: web.Request) -> web.Response:
        response = await self._handle(request)
        self._responses.inc(str(response.status))
        if response.status == 503:
            self.on_unavailable()
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        body = await _read_limited(request, self.max_body_bytes)
        if body is None:
            return _answer(413, "body too large", limit=self.max_body_bytes)
        obj = _json_object(body)
        if isinstance(obj, dict) and obj.get("eventType") == "WEB_HOOK_VERIFY":
            # 8x8's check of a new webhook must pass even unsigned (contract); never enqueued.
            self._received.inc("WEB_HOOK_VERIFY")
            return _answer(200, "verified")
        verified = await self._verify(body, request.headers)
        if isinstance(verified, web.Response):
            return verified
        event_id = EventId(verified.event_id if verified else _unsigned_id(body, request.headers))
        digest = hashlib.sha256(body).hexdigest()
        if obj is None:
            return await self._unusable(event_id, digest, "body is not valid JSON")
        if not isinstance(obj, dict):
            return await self._unusable(event_id, digest, "body is not a JSON object")
        return await self._accept(obj, event_id, digest)

    async def _verify(
        self, body: bytes, headers: Mapping[str, str]
    ) -> SignedHeaders | web.Response | None:
        """The signed headers, a refusal, or None when verification is off."""
        if self.verifier is None:
            return None
        try:
            return await self.verifier.verify(body, headers)
        except SignatureError as exc:
            if self.is_transient_key_error(exc):
                log.warning("signature_key_unavailable", extra={"reason": str(exc)})
                return _answer(503, "signing key temporarily unavailable")
            log.warning("signature_refused", extra={"reason": str(exc)})
            return self._refused()

    def _refused(self) -> web.Response:
        # One body for every reason (the reason is logged): a prober learns nothing, e.g.
        # whether a kid exists or an event id was seen.
        self.metrics.signature_failures.inc()
        return _answer(401, "invalid signature")

    def _reused(self, event_id: EventId) -> web.Response:
        # A valid signature on a body it was not made for: an attack (or a forger who won the
        # race against 8x8, see docs/security-webhook.md). The id only: no body, no text.
        log.warning("event_id_reused_with_another_body", extra={"event_id": event_id})
        return self._refused()

    async def _accept(self, obj: dict[str, Any], event_id: EventId, digest: str) -> web.Response:
        event = parse_event(obj)
        self._received.inc(_type_label(event.raw_type, event.kind))
        if event.kind not in RELAYED_KINDS:
            # Claimed all the same: its signature must not be reusable on a forged body.
            return await self._acknowledge(event, event_id, digest)
        if event.conversation_id is None:
            return await self._unusable(event_id, digest, "event has no conversationId")
        payload = event.to_json()
        if not (payload.isascii() or _encodable(payload)):  # isascii(): a flag, no copy
            # JSON allows lone surrogates ("\ud83d"); UTF-8, and so Redis, does not.
            return await self._unusable(event_id, digest, "body has text that is not valid Unicode")
        return await self._admit(event, event.conversation_id, event_id, digest, payload)

    async def _admit(
        self, event: ChatEvent, cid: ConversationId, event_id: EventId, digest: str, payload: str
    ) -> web.Response:
        """Claim and enqueue the event (`Store.admit_event`), then hand the entry to this
        process's relay."""
        partition = partition_of(cid, self.store.partitions)
        begin = self.plan(partition, event_id, event)
        handed = False
        try:
            admitted = await self.store.admit_event(
                partition, event_id, digest, payload, self.dedupe_ttl_s,
                ring=not self.owns(partition), begin=begin,
            )  # fmt: skip
            seen = self._seen(event_id, admitted.claim)
            if seen is not None:
                return seen
            if admitted.enqueued is None:  # a retry of an event enqueued and not delivered yet
                self.metrics.events_duplicate.inc()
                return _answer(200, "duplicate")
            handed = True  # the plan is the hand's from here, whatever happens in it
            self.hand(partition, admitted.enqueued, event, begin)
        except StaleClaim:
            # This request stalled between its claim and its enqueue (a loaded machine): 8x8's
            # retry claims again and finds the event delivered, pending or new.
            log.warning("enqueue_too_late", extra={"event_id": event_id})
            return _unavailable()
        except StoreUnavailable:
            log.error("enqueue_failed", extra={"event_id": event_id, "conversation": cid})
            return _unavailable()
        finally:
            if not handed:
                self.unplan(begin)
        # DEBUG: the relay's `relay_processed` is the event's one INFO line (with its outcome);
        # a second line per event cost several per cent of the hot path's CPU.
        if log.isEnabledFor(logging.DEBUG):  # not even its `extra` built at INFO
            log.debug(
                "event_accepted",
                extra={"event_id": event_id, "conversation": cid, "kind": event.kind.value},
            )
        return _answer(200, "accepted")

    async def _acknowledge(self, event: ChatEvent, event_id: EventId, digest: str) -> web.Response:
        try:
            claim = await self.store.claim_event(event_id, digest, settled=True)
        except StoreUnavailable:
            log.error("claim_failed", extra={"event_id": event_id})
            return _unavailable()
        seen = self._seen(event_id, claim.state)
        if seen is not None:
            return seen
        self._ignored.inc(event.kind.value)
        return _answer(200, "ignored", kind=event.kind.value)

    async def _unusable(self, event_id: EventId, digest: str, reason: str) -> web.Response:
        """400 for a body we cannot use, its event id claimed all the same: otherwise its
        signature could carry a usable body with the same CRC32."""
        try:
            claim = await self.store.claim_event(event_id, digest, settled=True)
        except StoreUnavailable:
            log.error("claim_failed", extra={"event_id": event_id})
            return _unavailable()
        if claim.state is Claim.CONFLICT:
            return self._reused(event_id)
        return _answer(400, reason)

    def _seen(self, event_id: EventId, claim: Claim) -> web.Response | None:
        """The answer when the event id was seen before; None when this request goes on
        (first seen, or seen with this very body and not delivered yet)."""
        if claim is Claim.CONFLICT:
            return self._reused(event_id)
        if claim is Claim.DONE:
            self.metrics.events_duplicate.inc()
            return _answer(200, "duplicate")
        return None


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    """The raw body, or None when it exceeds `limit` (declared or actual)."""
    declared = request.content_length  # parses the header on every access: once
    if declared is not None:
        if declared > limit:
            return None
        # The declared length, in one read (a body cut short is simply not valid JSON).
        try:
            return await request.content.readexactly(declared)
        except asyncio.IncompleteReadError as exc:
            return exc.partial
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


def _unsigned_id(body: bytes, headers: Mapping[str, str]) -> str:
    """The event id when signatures are off: the header if usable, else the body's hash
    (8x8's retries resend the same body)."""
    header = headers.get(HEADER_EVENT)
    if header and _encodable(header):
        return header
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


def _unavailable() -> web.Response:
    return _answer(503, "cannot accept the event right now; retry")


def _answer(status: int, result: str, **extra: Any) -> web.Response:
    # The same bytes and Content-Type as web.json_response, the body encoded once per answer.
    body = _answer_body(result, tuple(extra.items()))
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


@functools.lru_cache(maxsize=64)
def _answer_body(result: str, extra: tuple[tuple[str, Any], ...]) -> bytes:
    # Few distinct answers: constant reasons, the body limit, an event kind (an enum).
    return json.dumps({"result": result, **dict(extra)}).encode("utf-8")
