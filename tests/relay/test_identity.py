"""One identity per agent message (bridge/relay/identity.py): what each path computes."""

from __future__ import annotations

import pytest

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.ids import ConversationId, EventId
from bridge.relay.identity import (
    NEXT,
    MessageIdentity,
    identity_of,
    listed_identities,
    message_event_id,
    next_ordinal,
    text_digest,
)

C = ConversationId("c1")


def said(text: str | None) -> ChatEvent:
    return ChatEvent(kind=EventKind.AGENT_MESSAGE, raw_type="TEXT", conversation_id=C, text=text)


def test_the_digest_ignores_unicode_form_and_surrounding_space_only() -> None:
    assert text_digest("café") == text_digest("cafe\u0301") == text_digest("  café\n")
    assert text_digest("café") != text_digest("cafe")
    assert text_digest(None) == text_digest("")
    assert len(text_digest("x")) == 32


def test_listed_messages_count_each_text_separately_oldest_first() -> None:
    ok, hi = text_digest("ok"), text_digest("hi")
    assert listed_identities(["ok", "hi", " ok", "ok"]) == [
        MessageIdentity(ok, 1),
        MessageIdentity(hi, 1),
        MessageIdentity(ok, 2),
        MessageIdentity(ok, 3),
    ]


def test_a_webhook_event_takes_the_next_ordinal() -> None:
    assert identity_of("g4nqGuj8TpCa6tiZ3DeeNw", said("ok")) == MessageIdentity(
        text_digest("ok"), NEXT
    )


def test_a_listed_message_carries_its_identity_in_its_event_id() -> None:
    identity = MessageIdentity(text_digest("ok"), 2)
    event_id = message_event_id(identity)
    assert identity_of(event_id, said("ok")) == identity
    # the identity travels with the id, whatever the payload's text says
    assert identity_of(event_id, said("changed")) == identity


@pytest.mark.parametrize(
    "event_id",
    ["msg:abc:1", f"msg:{'0' * 32}:0", f"msg:{'0' * 32}:x", f"msg:{'0' * 32}:1:2", "msg:"],
)
def test_an_event_id_that_only_looks_like_one_is_an_ordinary_event(event_id: str) -> None:
    assert identity_of(event_id, said("ok")) == MessageIdentity(text_digest("ok"), NEXT)


def test_only_agent_messages_have_an_identity() -> None:
    joined = ChatEvent(kind=EventKind.AGENT_JOINED, raw_type="AGENT_JOINED", conversation_id=C)
    assert identity_of("e1", joined) is None


def test_a_listed_ordinal_starts_at_one() -> None:
    with pytest.raises(ValueError):
        message_event_id(MessageIdentity(text_digest("ok"), 0))
    assert message_event_id(MessageIdentity("a" * 32, 7)) == EventId(f"msg:{'a' * 32}:7")


@pytest.mark.parametrize(
    ("delivered", "ordinal"), [(set(), 1), ({1}, 2), ({1, 2}, 3), ({2}, 1), ({1, 3}, 2)]
)
def test_the_next_ordinal_is_the_lowest_not_delivered(delivered: set[int], ordinal: int) -> None:
    assert next_ordinal(delivered) == ordinal
