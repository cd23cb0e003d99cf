"""One interface over both 8x8 APIs (Chat Gateway and Chat API v2), and its value types.

Everything else in the bridge talks to 8x8 through `ChatClient`; which API family is behind it
is decided once, by `EIGHTBYEIGHT_API`, in `bridge.eightbyeight.make_client`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bridge.ids import ConversationId

Author = Literal["user", "bot"]

# Both APIs accept at most 200 history messages on create (spec §2.6, §4.5).
HISTORY_LIMIT = 200


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One turn of the bot transcript, shown to the agent on create."""

    author: Author
    text: str


@dataclass(frozen=True, slots=True)
class Customer:
    """What the agent is told about the user. `extra` holds any further key/value pairs."""

    name: str | None = None
    email: str | None = None
    user_id: str | None = None
    phone: str | None = None
    company: str | None = None
    case_id: str | None = None
    language: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CreatedConversation:
    conversation_id: ConversationId
    created_at: str | None = None  # ISO time (gateway) or epoch ms as text (v2)


@dataclass(frozen=True, slots=True)
class Interaction:
    """One interaction of a v2 conversation; times in epoch ms (None when 8x8 gave none)."""

    id: str
    start_ms: int | None = None
    end_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    id: ConversationId
    channel_id: str | None
    state: str | None  # gateway: created | active | idle; v2: None (not reported)
    customer: dict[str, Any] = field(default_factory=dict)
    interaction_ids: tuple[str, ...] = ()
    interactions: tuple[Interaction, ...] = ()  # v2 only, oldest first


@dataclass(frozen=True, slots=True)
class Participant:
    """Someone who took part in a conversation. `removed` (gateway only; v2 does not say)
    tells who is no longer in it."""

    id: str
    type: str  # user | bot | agent | system
    removed: bool | None = None


@dataclass(frozen=True, slots=True)
class ConversationMessage:
    text: str
    author_type: str  # user | bot | agent | system
    id: str | None = None
    created_at: str | None = None
    interaction_id: str | None = None


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    name: str
    uri: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    name: str
    webhook_id: str | None = None
    queue_id: str | None = None
    type: str | None = None


def trim_history(
    history: Sequence[HistoryMessage], limit: int = HISTORY_LIMIT
) -> list[HistoryMessage]:
    """Keep the most recent `limit` non-empty messages, oldest first: deterministic, and the
    agent sees what led up to the escalation."""
    kept = [m for m in history if m.text.strip()]
    return kept[-limit:] if limit > 0 else []


class ChatClient(Protocol):
    """The operations the bridge needs from 8x8, whichever API family serves them."""

    async def create_conversation(
        self,
        customer: Customer,
        history: Sequence[HistoryMessage] = (),
        *,
        channel_id: str | None = None,
        queue_id: str | None = None,
    ) -> CreatedConversation:
        """Open a conversation (queued in the channel's queue, or `queue_id` on gateway).
        Not idempotent: retried only when the request cannot have reached 8x8."""
        ...

    async def send_message(
        self, conversation_id: ConversationId, text: str, *, author: Author = "user"
    ) -> None:
        """Post a user or bot message; on an ended interaction this reopens the conversation."""
        ...

    async def leave(self, conversation_id: ConversationId) -> None:
        """The customer/user leaves: ends the current interaction (the conversation lives on)."""
        ...

    async def get_conversation(self, conversation_id: ConversationId) -> Conversation: ...

    async def list_messages(self, conversation_id: ConversationId) -> list[ConversationMessage]: ...

    async def list_participants(self, conversation_id: ConversationId) -> list[Participant]: ...

    async def fetch_jwk(self, kid: str) -> dict[str, Any]:
        """The public JWK with this `kid` (no credentials needed); NotFound if unknown."""
        ...

    # --- provisioning ---
    async def list_webhooks(self) -> list[Webhook]: ...
    async def create_webhook(self, name: str, uri: str) -> Webhook: ...
    async def get_webhook(self, webhook_id: str) -> Webhook: ...
    async def verify_webhook(self, uri: str) -> None: ...
    async def update_webhook(self, webhook_id: str, name: str, uri: str) -> Webhook: ...
    async def delete_webhook(self, webhook_id: str) -> None: ...
    async def list_channels(self) -> list[Channel]: ...
    async def create_channel(self, name: str, webhook_id: str, queue_id: str) -> Channel: ...
    async def get_channel(self, channel_id: str) -> Channel: ...
    async def update_channel(
        self, channel_id: str, name: str, webhook_id: str, queue_id: str
    ) -> Channel: ...
    async def delete_channel(self, channel_id: str) -> None: ...

    async def close(self) -> None: ...
