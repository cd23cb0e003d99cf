"""`ChatClient` over the Contact Center Chat Gateway v1 (spec §4), the current 8x8 API.

Webhook and channel CRUD comes from `Provisioning`; the wire helpers both API families share
live in `wire`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from bridge.eightbyeight.auth import ApiKeyAuth
from bridge.eightbyeight.client import (
    Author,
    Conversation,
    ConversationMessage,
    CreatedConversation,
    Customer,
    HistoryMessage,
    Participant,
    trim_history,
)
from bridge.eightbyeight.config import EightByEightConfig
from bridge.eightbyeight.provisioning import Provisioning
from bridge.eightbyeight.transport import Caller, Retry, Transport
from bridge.eightbyeight.wire import (
    MAX_CUSTOM_PROPERTIES,
    MAX_PAGES,
    PAGE_SIZE,
    created_from_wire,
    jwk_policy,
    obj,
    objects,
    participants_from_wire,
    policy_for,
    segment,
    text_or_none,
)
from bridge.errors import NotFound, PermanentUpstreamError, RetryableUpstreamError
from bridge.ids import ConversationId

log = logging.getLogger(__name__)

PREFIX = "/chat-gateway/v1"
WEBHOOK_VERSION = "Chat Gateway v1.0"


class GatewayClient(Provisioning):
    """The Chat Gateway: `x-api-key` auth, HAL responses, no tenant or region in paths."""

    WEBHOOKS = "webhooks"
    WEBHOOK_VERSION = WEBHOOK_VERSION
    CHANNEL_TYPE = "ChatAPI"  # the gateway serves several channel types; ours is ChatAPI

    def __init__(
        self, config: EightByEightConfig, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._config = config
        self._base = config.base_url.rstrip("/")
        self._transport = Transport(
            session=session, accept="application/hal+json, application/json"
        )
        self._caller = Caller(
            self._transport,
            ApiKeyAuth(config.api_key, config.tenant_id),
            request_timeout_s=config.request_timeout_s,
            policy=policy_for(config),
        )

    def _url(self, *segments: str) -> str:
        return self._base + PREFIX + "".join("/" + segment(s) for s in segments)

    # --- conversations ---

    async def create_conversation(
        self,
        customer: Customer,
        history: Sequence[HistoryMessage] = (),
        *,
        channel_id: str | None = None,
        queue_id: str | None = None,
    ) -> CreatedConversation:
        """Open a conversation; assigned to `queue_id` (else the configured queue, else the
        channel's). Retried only when 8x8 cannot have seen it, or answered 429."""
        body: dict[str, Any] = {
            "channelId": channel_id or self._config.channel_id,
            "user": user_body(customer),
        }
        if queue := queue_id or self._config.queue_id:
            body["assignment"] = {"type": "queue", "id": queue}
        if messages := trim_history(history):
            body["history"] = {
                "messages": [{"authorType": m.author, "text": m.text} for m in messages]
            }
        answer = await self._caller.call(
            "create_conversation",
            "POST",
            self._url("conversations"),
            json_body=body,
            retry_on=Retry.UNSENT_ONLY,
        )
        return created_from_wire(answer, "createdAt")

    async def send_message(
        self, conversation_id: ConversationId, text: str, *, author: Author = "user"
    ) -> None:
        """Post a user or bot message (202); on an idle conversation this reopens it."""
        await self._caller.call(
            "send_message",
            "POST",
            self._url("conversations", conversation_id, "messages"),
            json_body={"authorType": author, "text": text},
        )

    async def leave(self, conversation_id: ConversationId) -> None:
        """The user leaves: `PATCH participants/user {"removed": true}` ends the interaction."""
        await self._caller.call(
            "leave",
            "PATCH",
            self._url("conversations", conversation_id, "participants", "user"),
            json_body={"removed": True},
        )

    async def get_conversation(self, conversation_id: ConversationId) -> Conversation:
        """The conversation resource; `state` is created, active or idle."""
        body = obj(
            await self._caller.call(
                "get_conversation", "GET", self._url("conversations", conversation_id)
            )
        )
        return Conversation(
            id=ConversationId(text_or_none(body.get("id")) or conversation_id),
            channel_id=text_or_none(body.get("channelId")),
            state=text_or_none(body.get("state")),
            customer=obj(body.get("user")),
        )

    async def list_messages(self, conversation_id: ConversationId) -> list[ConversationMessage]:
        """Every message, oldest first (the API's default order is newest first)."""
        items = await self._list(
            "list_messages",
            "messages",
            {"sort": "createdAt:asc"},
            url=self._url("conversations", conversation_id, "messages"),
        )
        return [_message_from_wire(item) for item in items]

    async def list_participants(self, conversation_id: ConversationId) -> list[Participant]:
        """Everyone who took part; `removed` tells who is no longer in it."""
        items = await self._list(
            "participants",
            "participants",
            url=self._url("conversations", conversation_id, "participants"),
        )
        return participants_from_wire(items)

    async def fetch_jwk(self, kid: str) -> dict[str, Any]:
        """The public JWK `kid`, from the gateway path; the Chat API v2 path is the fallback
        because 8x8's own gateway samples still fetch keys there (spec §4.9)."""
        try:
            return await self._jwk("fetch_jwk", self._url("jwk", kid, "public"))
        except (NotFound, RetryableUpstreamError) as first:
            fallback = f"{self._base}/vcc/{self._config.region}/chat/v2/jwk/{segment(kid)}/public"
            try:
                return await self._jwk("fetch_jwk_v2", fallback)
            except NotFound:
                # Only "unknown" from both paths means unknown; if the gateway path was
                # merely down, say so, so that the caller does not cache a valid kid as bad.
                raise first from None

    async def _jwk(self, operation: str, url: str) -> dict[str, Any]:
        answer = await self._caller.call(
            operation, "GET", url, authenticated=False, policy=jwk_policy(self._config)
        )
        if not isinstance(answer, dict):
            raise PermanentUpstreamError(f"8x8 {operation}: response is not a JWK object")
        return answer

    async def close(self) -> None:
        """Release the HTTP session (if this client created it)."""
        await self._transport.close()

    async def _list(
        self,
        operation: str,
        collection: str,
        params: Mapping[str, str] | None = None,
        *,
        url: str | None = None,
    ) -> list[dict[str, Any]]:
        """All items of a HAL list, page by page (`_embedded.<collection>`, `page`), from
        `url`, or by default from the path segment `collection`."""
        url = url or self._url(collection)
        items: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            query = {**(params or {}), "page": str(page), "size": str(PAGE_SIZE)}
            body = obj(await self._caller.call(operation, "GET", url, params=query))
            found = objects(obj(body.get("_embedded")).get(collection))
            items.extend(found)
            total = obj(body.get("page")).get("totalPages")
            if not found or not isinstance(total, int) or page + 1 >= total:
                break
        return items


def _message_from_wire(item: Mapping[str, Any]) -> ConversationMessage:
    return ConversationMessage(
        text=text_or_none(item.get("text")) or "",
        author_type=text_or_none(obj(item.get("author")).get("type")) or "unknown",
        id=text_or_none(item.get("id")),
        created_at=text_or_none(item.get("createdAt")),
    )


def user_body(customer: Customer) -> dict[str, Any]:
    """The gateway `user` object: predefined fields, then custom data as key/value pairs."""
    fields = {
        "name": customer.name,
        "userId": customer.user_id,
        "email": customer.email,
        "phone": customer.phone,
        "company": customer.company,
        "caseId": customer.case_id,
        "language": customer.language,
    }
    user: dict[str, Any] = {key: value for key, value in fields.items() if value}
    # 8x8 wants both key and value on every item, and at most 30 of them.
    extra = [{"key": k, "value": v} for k, v in customer.extra if k and v]
    if extra:
        user["additionalProperties"] = extra[:MAX_CUSTOM_PROPERTIES]
    return user
