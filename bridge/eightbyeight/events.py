"""8x8 webhook events (both API families) parsed into one internal vocabulary.

Pure: no I/O. Parsing never raises for a JSON object: unknown types and odd fields become an
`UNKNOWN` event or are ignored, because 8x8 documents its events loosely (spec §3, §4.9) and a
receiver that throws on a new field would make 8x8 retry forever.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from bridge.ids import ConversationId


class EventKind(StrEnum):
    """What happened, whichever 8x8 API said it."""

    VERIFY = "verify"  # WEB_HOOK_VERIFY: answered 2xx, never enqueued
    CONVERSATION_STATE = "conversation_state"  # gateway CONVERSATION_UPDATE (created/active/idle)
    QUEUED = "queued"  # the interaction waits in a queue
    AGENT_JOINED = "agent_joined"  # an agent accepted (v2 AGENT_JOINED, gateway MEMBERS_CHANGED)
    AGENT_LEFT = "agent_left"  # the agent left; final unless a transfer is under way
    TRANSFER = "transfer"  # the agent moved the chat to another queue
    AGENT_MESSAGE = "agent_message"  # the agent wrote something for the user
    USER_LEFT = "user_left"  # gateway: the user participant left (our own leave, echoed)
    TYPING = "typing"  # gateway ACTIVITY typing (started or stopped)
    ECHO = "echo"  # gateway MESSAGE we (bot/user side) posted ourselves: never relayed
    OTHER = "other"  # a known type we have no use for (other ACTIVITY, user joined)
    UNKNOWN = "unknown"  # an eventType we do not know


# The kinds that reach the relay. The rest are acknowledged and dropped at the door (typing
# too, for now: Rasa's HTTP API has no way to show it; the state machine is ready for it).
RELAYED_KINDS = frozenset(
    {
        EventKind.CONVERSATION_STATE,
        EventKind.QUEUED,
        EventKind.AGENT_JOINED,
        EventKind.AGENT_LEFT,
        EventKind.TRANSFER,
        EventKind.AGENT_MESSAGE,
        EventKind.USER_LEFT,
    }
)


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file the agent sent (gateway MESSAGE). The URL is pre-signed and short-lived."""

    url: str
    name: str | None = None
    type: str | None = None  # image | video | audio | file
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ChatEvent:
    """One 8x8 webhook event in the bridge's vocabulary."""

    kind: EventKind
    raw_type: str
    conversation_id: ConversationId | None = None
    timestamp_ms: int | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    text: str | None = None
    queue_id: str | None = None
    queue_name: str | None = None
    state: str | None = None  # gateway conversation state: created | active | idle
    typing: bool | None = None
    attachments: tuple[Attachment, ...] = field(default=())

    def to_json(self) -> str:
        """Compact JSON without empty fields (what the store keeps per event)."""
        # By hand, not `dataclasses.asdict`: its recursive deep copy was a few per cent of the
        # hot path's CPU. Same keys, same order, same bytes.
        d: dict[str, Any] = {
            name: value for name in _SCALAR_FIELDS if (value := getattr(self, name)) is not None
        }
        if self.attachments:  # the last field
            d["attachments"] = [
                {"url": a.url, "name": a.name, "type": a.type, "id": a.id} for a in self.attachments
            ]
        return _COMPACT_JSON(d)

    @classmethod
    def from_json(cls, data: str | bytes) -> ChatEvent:
        d = json.loads(data)
        listed = d.pop("attachments", None)
        atts = tuple(Attachment(**a) for a in listed) if listed else ()
        value = d.pop("kind")
        kind = _KINDS.get(value) if isinstance(value, str) else None
        return cls(kind=kind or EventKind(value), attachments=atts, **d)


# By value: a dict lookup where calling the enum searches its machinery (once per entry read).
_KINDS: dict[str, EventKind] = {k.value: k for k in EventKind}


_SCALAR_FIELDS = tuple(f.name for f in fields(ChatEvent) if f.name != "attachments")
assert fields(ChatEvent)[-1].name == "attachments"  # to_json writes it last, as asdict would
# json.dumps with these options builds a JSONEncoder per call; one, made once, writes the same.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


_LONG_MAX = 2**63 - 1  # 8x8's timestamps are Java longs


def _int(value: Any) -> int | None:
    """An integer as 8x8 sends it (a number, or a numeric string); None for anything else,
    including NaN, ±Infinity, 1e400 (JSON parses it as infinity) and numbers beyond a long."""
    if isinstance(value, str):
        try:
            value = float(value)  # "1e400" and 5,000 digits become inf, not an error
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value)
    return value if -_LONG_MAX <= value <= _LONG_MAX else None


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _attachments(value: Any) -> tuple[Attachment, ...]:
    out: list[Attachment] = []
    for item in value if isinstance(value, list) else []:
        item = _map(item)
        url = _str(item.get("preSignedUrl")) or _str(item.get("url"))
        if url:
            out.append(
                Attachment(
                    url=url,
                    name=_str(item.get("fileName")),
                    type=_str(item.get("type")),
                    id=_str(item.get("id")),
                )
            )
    return tuple(out)


def _members_changed(data: Mapping[str, Any]) -> dict[str, Any]:
    member, change = _str(data.get("memberType")), _str(data.get("change"))
    if member == "agent" and change == "joined":
        return {"kind": EventKind.AGENT_JOINED, "agent_id": _str(data.get("id"))}
    if member == "agent" and change == "left":
        return {"kind": EventKind.AGENT_LEFT, "agent_id": _str(data.get("id"))}
    if member == "user" and change == "left":
        return {"kind": EventKind.USER_LEFT}
    return {"kind": EventKind.OTHER}


def _message(data: Mapping[str, Any]) -> dict[str, Any]:
    sender = _map(data.get("sender"))
    sender_type = _str(sender.get("type"))
    # Gateway MESSAGE fires for every participant: what we posted comes back, marked isEcho
    # (spec §4.9). Only agent messages go to the user; a missing sender type counts as agent.
    if data.get("isEcho") is True or sender_type in ("user", "bot"):
        return {"kind": EventKind.ECHO}
    return {
        "kind": EventKind.AGENT_MESSAGE,
        "agent_id": _str(sender.get("id")),
        "agent_name": _str(sender.get("name")),
        "text": _str(data.get("text")),
        "attachments": _attachments(data.get("attachments")),
    }


def _activity(data: Mapping[str, Any]) -> dict[str, Any]:
    if data.get("name") != "typing":
        return {"kind": EventKind.OTHER}
    users = _map(data.get("value")).get("users")
    users = users if isinstance(users, list) else []
    agents = [_map(u) for u in users if _map(u).get("type") in ("agent", None)]
    agent_id = _str(agents[0].get("id")) if agents else None
    return {"kind": EventKind.TYPING, "typing": bool(agents), "agent_id": agent_id}


def _fields(event_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
    # Gateway events carry their fields under `data`; v2 events are flat. Reading both places
    # also covers the legacy-style gateway bodies CG-WF shows ([DOC-BUG], spec §4.9).
    data = _map(body.get("data")) or body
    match event_type:
        case "WEB_HOOK_VERIFY":
            return {"kind": EventKind.VERIFY}
        case "QUEUED":
            return {
                "kind": EventKind.QUEUED,
                "queue_id": _str(data.get("queueId")),
                "queue_name": _str(data.get("queueName")),
            }
        case "AGENT_JOINED" | "AGENT_LEFT":
            kind = EventKind.AGENT_JOINED if event_type == "AGENT_JOINED" else EventKind.AGENT_LEFT
            return {
                "kind": kind,
                "agent_id": _str(data.get("agentId")),
                "agent_name": _str(data.get("agentName")),
            }
        case "TRANSFER":
            return {"kind": EventKind.TRANSFER}
        case "TEXT":
            return {
                "kind": EventKind.AGENT_MESSAGE,
                "agent_id": _str(data.get("agentId")),
                "agent_name": _str(data.get("agentName")),
                "text": _str(data.get("message")),
            }
        case "CONVERSATION_UPDATE":
            return {"kind": EventKind.CONVERSATION_STATE, "state": _str(data.get("state"))}
        case "MEMBERS_CHANGED":
            return _members_changed(data)
        case "MESSAGE":
            return _message(data)
        case "ACTIVITY":
            return _activity(data)
    return {"kind": EventKind.UNKNOWN}


def parse_event(body: Mapping[str, Any]) -> ChatEvent:
    """Parse one decoded webhook body (a JSON object) of either API family. Never raises."""
    raw_type = _str(body.get("eventType")) or ""
    conversation = _str(body.get("conversationId"))
    return ChatEvent(
        raw_type=raw_type,
        conversation_id=ConversationId(conversation) if conversation else None,
        timestamp_ms=_int(body.get("timestamp")),
        **_fields(raw_type, body),
    )
