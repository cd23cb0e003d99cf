"""Every webhook event example of the spec (8x8-chat-api.md §3, §4.9), parsed into the
bridge's vocabulary; and no body ever makes the parser raise."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.eightbyeight.events import RELAYED_KINDS, Attachment, ChatEvent, EventKind, parse_event
from bridge.ids import ConversationId

K = EventKind

# --- Chat API v2 (§3.3-§3.7, and the real signed example of §3.9) ---
V2: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"eventType": "QUEUED", "messageType": "SYSTEM", "conversationId": "ID-0", "timestamp": 0,
      "queueId": "string", "queueName": "string"},
     {"kind": K.QUEUED, "conversation_id": "ID-0", "timestamp_ms": 0, "queue_id": "string", "queue_name": "string"}),
    ({"eventType": "AGENT_JOINED", "messageType": "SYSTEM", "conversationId": "ID-0", "timestamp": 0,
      "agentId": "string", "agentName": "string"},
     {"kind": K.AGENT_JOINED, "agent_id": "string", "agent_name": "string"}),
    ({"eventType": "AGENT_LEFT", "messageType": "SYSTEM", "conversationId": "ID-0", "timestamp": 0,
      "agentId": "string", "agentName": "string"},
     {"kind": K.AGENT_LEFT, "agent_id": "string", "agent_name": "string"}),
    ({"eventType": "AGENT_JOINED", "messageType": "SYSTEM", "conversationId": "Aka5NMHU8MtIG7lUQOxI0DTOvM4",
      "agentId": "cmalutan", "agentName": "Cosmin,Malutan", "timestamp": 1629804577002},
     {"kind": K.AGENT_JOINED, "conversation_id": "Aka5NMHU8MtIG7lUQOxI0DTOvM4", "agent_id": "cmalutan",
      "agent_name": "Cosmin,Malutan", "timestamp_ms": 1629804577002}),
    ({"eventType": "TRANSFER", "messageType": "SYSTEM", "conversationId": "ID-0", "timestamp": 0},
     {"kind": K.TRANSFER, "conversation_id": "ID-0"}),
    ({"eventType": "TEXT", "messageType": "AGENT", "conversationId": "ID-0", "timestamp": 0,
      "agentId": "string", "agentName": "string", "message": "string"},
     {"kind": K.AGENT_MESSAGE, "text": "string", "agent_id": "string", "agent_name": "string"}),
    ({"notificationVersion": "v2.0", "eventType": "WEB_HOOK_VERIFY"},
     {"kind": K.VERIFY, "conversation_id": None, "timestamp_ms": None}),
]  # fmt: skip

# --- Chat Gateway (§4.9) ---
_T = 1713100000000
GATEWAY: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"eventType": "CONVERSATION_UPDATE", "conversationId": "ID-0", "timestamp": _T,
      "data": {"state": "active", "assignment": {"type": "agent", "id": "agent-abc-123", "resourceId": "resource-123"},
               "user": {"name": "John Doe", "userId": "user-456", "email": "john@example.com", "phone": "+1234567890",
                        "company": "Acme Inc.", "caseId": "CASE-789", "language": "en", "ipaddress": "192.168.1.1",
                        "timezoneOffset": -300, "additionalProperties": [{"key": "department", "value": "support"}]},
               "msisdn": "+1234567890", "channel": "WhatsApp"}},
     {"kind": K.CONVERSATION_STATE, "state": "active", "timestamp_ms": _T}),
    ({"eventType": "QUEUED", "conversationId": "ID-0", "timestamp": _T,
      "data": {"queueId": "queue-abc-123", "queueName": "Customer Support"}},
     {"kind": K.QUEUED, "queue_id": "queue-abc-123", "queue_name": "Customer Support"}),
    ({"eventType": "MEMBERS_CHANGED", "conversationId": "ID-0", "timestamp": _T,
      "data": {"memberType": "agent", "change": "joined", "id": "agent-abc-123"}},
     {"kind": K.AGENT_JOINED, "agent_id": "agent-abc-123", "agent_name": None}),
    ({"eventType": "MEMBERS_CHANGED", "conversationId": "ID-0", "timestamp": _T,
      "data": {"memberType": "agent", "change": "left", "id": "agent-abc-123"}},
     {"kind": K.AGENT_LEFT, "agent_id": "agent-abc-123"}),
    ({"eventType": "MEMBERS_CHANGED", "conversationId": "ID-0", "timestamp": _T,
      "data": {"memberType": "user", "change": "left", "id": "user-456"}},
     {"kind": K.USER_LEFT}),
    ({"eventType": "MEMBERS_CHANGED", "conversationId": "ID-0", "timestamp": _T,
      "data": {"memberType": "user", "change": "joined", "id": "user-456"}},
     {"kind": K.OTHER}),
    ({"eventType": "TRANSFER", "conversationId": "ID-0", "timestamp": _T}, {"kind": K.TRANSFER}),
    ({"eventType": "MESSAGE", "conversationId": "ID-0", "timestamp": _T,
      "data": {"isEcho": False, "sender": {"id": "agent-abc-123", "type": "agent"}, "text": "Hello, how can I help you?",
               "attachments": [{"id": "att-001", "type": "image",
                                "preSignedUrl": "https://storage.example.com/attachments/att-001?signature=abc",
                                "fileName": "screenshot.png"}],
               "cards": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": {}}]}},
     {"kind": K.AGENT_MESSAGE, "text": "Hello, how can I help you?", "agent_id": "agent-abc-123",
      "attachments": (Attachment("https://storage.example.com/attachments/att-001?signature=abc", "screenshot.png",
                                 "image", "att-001"),)}),
    ({"eventType": "MESSAGE", "conversationId": "ID-0", "timestamp": _T,
      "data": {"isEcho": True, "sender": {"id": "bot", "type": "bot"}, "text": "our own"}},
     {"kind": K.ECHO, "text": None}),
    ({"eventType": "MESSAGE", "conversationId": "ID-0", "timestamp": _T,
      "data": {"sender": {"id": "u1", "type": "user"}, "text": "the user's, echoed"}},
     {"kind": K.ECHO}),
    ({"eventType": "ACTIVITY", "conversationId": "ID-0", "timestamp": _T,
      "data": {"name": "typing", "value": {"users": [{"type": "agent", "id": "agent-abc-123"}]}}},
     {"kind": K.TYPING, "typing": True, "agent_id": "agent-abc-123"}),
    ({"eventType": "ACTIVITY", "conversationId": "ID-0", "timestamp": _T, "data": {"name": "typing", "value": {"users": []}}},
     {"kind": K.TYPING, "typing": False}),
    ({"eventType": "ACTIVITY", "conversationId": "ID-0", "timestamp": _T,
      "data": {"name": "adaptiveCard/action", "value": {"type": "Action.Submit", "data": {"a": 1}}}},
     {"kind": K.OTHER}),
    ({"eventType": "ACTIVITY", "conversationId": "ID-0", "timestamp": _T,
      "data": {"name": "quickReply/action", "value": {"type": "postback",
               "data": {"title": "Check order status", "payload": "order_status"}}}},
     {"kind": K.OTHER}),
    ({"eventType": "ACTIVITY", "conversationId": "ID-0", "timestamp": _T,
      "data": {"name": "read-receipts", "value": [{"timestamp": _T, "users": [{"id": "agent-abc-123", "type": "agent"}]}]}},
     {"kind": K.OTHER}),
    ({"eventType": "ACTIVITY", "conversationId": "ID-0", "timestamp": _T,
      "data": {"name": "interactive/reply", "value": {"type": "button_reply", "button_reply": {"id": "btn-1", "title": "Yes"}}}},
     {"kind": K.OTHER}),
    ({"notificationVersion": "Chat Gateway v1.0", "eventType": "WEB_HOOK_VERIFY"}, {"kind": K.VERIFY}),
    # [DOC-BUG] CG-WF shows a legacy-style AGENT_JOINED for the gateway: read it all the same.
    ({"eventType": "AGENT_JOINED", "messageType": "SYSTEM", "conversationId": "ID-0", "agentId": "a", "agentName": "Ann",
      "timestamp": _T}, {"kind": K.AGENT_JOINED, "agent_name": "Ann"}),
]  # fmt: skip


@pytest.mark.parametrize(("body", "expected"), V2 + GATEWAY)
def test_every_spec_example_parses(body: dict[str, Any], expected: dict[str, Any]) -> None:
    event = parse_event(body)
    assert event.raw_type == body["eventType"]
    for field, value in expected.items():
        assert getattr(event, field) == value, field


def test_only_events_the_user_must_hear_about_are_relayed() -> None:
    relayed = {parse_event(b).kind for b, _ in V2 + GATEWAY} & RELAYED_KINDS
    assert relayed == {K.QUEUED, K.AGENT_JOINED, K.AGENT_LEFT, K.TRANSFER, K.AGENT_MESSAGE,
                       K.CONVERSATION_STATE, K.USER_LEFT}  # fmt: skip
    assert (
        K.ECHO not in RELAYED_KINDS
        and K.VERIFY not in RELAYED_KINDS
        and K.TYPING not in RELAYED_KINDS
    )


@pytest.mark.parametrize(
    ("body", "field", "value"),
    [
        ({"eventType": "TEXT", "conversationId": 12345, "message": "x"}, "conversation_id", "12345"),
        ({"eventType": "TEXT", "conversationId": "c", "timestamp": "1629804577002"}, "timestamp_ms", 1629804577002),
        ({"eventType": "TEXT", "conversationId": "c", "timestamp": True}, "timestamp_ms", None),
        ({"eventType": "TEXT", "conversationId": "c", "message": {"nested": 1}}, "text", None),
        ({"eventType": "QUEUED", "conversationId": "c", "data": "not an object", "queueId": "q"}, "queue_id", "q"),
        ({"eventType": "SOMETHING_NEW", "conversationId": "c", "newField": [1, 2]}, "kind", K.UNKNOWN),
        ({"conversationId": "c"}, "kind", K.UNKNOWN),
        ({"eventType": None}, "kind", K.UNKNOWN),
        ({"eventType": "MESSAGE", "conversationId": "c", "data": {"text": "no sender"}}, "kind", K.AGENT_MESSAGE),
        ({"eventType": "MESSAGE", "conversationId": "c", "data": {"attachments": "nope", "text": "t"}}, "attachments", ()),
    ],
)  # fmt: skip
def test_odd_fields_are_tolerated(body: dict[str, Any], field: str, value: Any) -> None:
    assert getattr(parse_event(body), field) == value


@pytest.mark.parametrize(("body", "_"), V2 + GATEWAY)
def test_the_stored_form_round_trips(body: dict[str, Any], _: dict[str, Any]) -> None:
    event = parse_event(body)
    assert ChatEvent.from_json(event.to_json()) == event
    assert "null" not in event.to_json()  # empty fields are left out: Redis memory matters


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=15,
)
_keys = st.sampled_from(
    ["eventType", "conversationId", "timestamp", "data", "message", "agentName", "queueId"]
)
_types = st.sampled_from(["TEXT", "QUEUED", "MESSAGE", "MEMBERS_CHANGED", "ACTIVITY", "CONVERSATION_UPDATE",
                          "AGENT_JOINED", "AGENT_LEFT", "TRANSFER", "WEB_HOOK_VERIFY", "X"])  # fmt: skip


@given(
    body=st.dictionaries(_keys, _json) | st.fixed_dictionaries({"eventType": _types, "data": _json})
)
def test_parsing_never_raises_and_the_result_serialises(body: dict[str, Any]) -> None:
    event = parse_event(body)
    # Whole: the door hands the relay the event it parsed, the stream keeps its JSON, and
    # the relay must see the same event either way.
    assert ChatEvent.from_json(event.to_json()) == event
    assert event.to_json() == _stored_form_reference(event)


@pytest.mark.parametrize(
    "raw",
    [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"99999999999999999999",
     b'"1e400"', b'"NaN"', b'"' + b"9" * 5000 + b'"', b"true", b"[1]"],
)  # fmt: skip
def test_a_timestamp_that_is_not_a_long_is_dropped_and_the_event_kept(raw: bytes) -> None:
    body = json.loads(
        b'{"eventType":"TEXT","conversationId":"c","message":"hi","timestamp":%s}' % raw
    )
    event = parse_event(body)
    assert (event.kind, event.text, event.timestamp_ms) == (K.AGENT_MESSAGE, "hi", None)
    assert ChatEvent.from_json(event.to_json()) == event


def _stored_form_reference(event: ChatEvent) -> str:
    """The stored form as first defined (via `dataclasses.asdict`): entries already in a
    stream were written this way, so the faster `to_json` must give the same bytes."""
    from dataclasses import asdict

    d = {k: v for k, v in asdict(event).items() if v not in (None, ())}
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(("body", "_"), V2 + GATEWAY)
def test_the_stored_form_is_unchanged(body: dict[str, Any], _: dict[str, Any]) -> None:
    event = parse_event(body)
    assert event.to_json() == _stored_form_reference(event)


def test_the_stored_form_of_a_full_event_with_attachments_is_unchanged() -> None:
    event = ChatEvent(
        kind=EventKind.AGENT_MESSAGE, raw_type="MESSAGE", conversation_id=ConversationId("c-1"),
        timestamp_ms=5, agent_id="a", agent_name="Ånna", text="héllo 👋", queue_id="q",
        queue_name="Q", state="active", typing=False,
        attachments=(Attachment("https://x/1", "f.png", "image", "i1"), Attachment("https://x/2")),
    )  # fmt: skip
    assert event.to_json() == _stored_form_reference(event)
    assert ChatEvent.from_json(event.to_json()) == event
