"""`ChatClient` over the Contact Center Chat Gateway v1 (spec §4), the current 8x8 API.

The module also holds the wire helpers both API families share (webhook and channel objects
have the same shape in both, spec §2.3-2.5 and §4.3-4.4); `chat_v2` imports them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp

from bridge.eightbyeight.auth import ApiKeyAuth
from bridge.eightbyeight.client import (
    Author,
    Channel,
    Conversation,
    ConversationMessage,
    CreatedConversation,
    Customer,
    HistoryMessage,
    Webhook,
    trim_history,
)
from bridge.eightbyeight.config import EightByEightConfig
from bridge.eightbyeight.transport import Caller, Retry, Transport
from bridge.errors import NotFound, PermanentUpstreamError, RetryableUpstreamError
from bridge.ids import ConversationId
from bridge.retry import RetryPolicy

log = logging.getLogger(__name__)

PREFIX = "/chat-gateway/v1"
WEBHOOK_VERSION = "Chat Gateway v1.0"
PAGE_SIZE = 50
MAX_PAGES = 100  # a guard against a server whose page counts never end
MAX_CUSTOM_PROPERTIES = 30  # 8x8's limit on custom customer data (spec §2.6, §4.5)


class GatewayClient:
    """The Chat Gateway: `x-api-key` auth, HAL responses, no tenant or region in paths."""

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
            self._url("conversations", conversation_id, "messages"),
            "messages",
            {"sort": "createdAt:asc"},
        )
        return [_message_from_wire(item) for item in items]

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

    # --- provisioning ---

    async def list_webhooks(self) -> list[Webhook]:
        """Every webhook, all pages."""
        items = await self._list("list_webhooks", self._url("webhooks"), "webhooks")
        return [webhook_from_wire(item) for item in items]

    async def create_webhook(self, name: str, uri: str) -> Webhook:
        """Create a webhook (8x8 sends WEB_HOOK_VERIFY to `uri` first). Not retried after
        8x8 may have seen it."""
        answer = await self._caller.call(
            "create_webhook",
            "POST",
            self._url("webhooks"),
            json_body=webhook_body(name, uri, WEBHOOK_VERSION),
            retry_on=Retry.UNSENT_ONLY,
        )
        return webhook_from_wire(answer)

    async def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook; NotFound if it does not exist."""
        return webhook_from_wire(
            await self._caller.call("get_webhook", "GET", self._url("webhooks", webhook_id))
        )

    async def update_webhook(self, webhook_id: str, name: str, uri: str) -> Webhook:
        """Replace a webhook's name and URI."""
        answer = await self._caller.call(
            "update_webhook",
            "PUT",
            self._url("webhooks", webhook_id),
            json_body=webhook_body(name, uri, WEBHOOK_VERSION),
        )
        return webhook_from_wire(answer)

    async def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook."""
        await self._caller.call("delete_webhook", "DELETE", self._url("webhooks", webhook_id))

    async def list_channels(self) -> list[Channel]:
        """Every channel, all pages (other channel types than ChatAPI included)."""
        items = await self._list("list_channels", self._url("channels"), "channels")
        return [channel_from_wire(item) for item in items]

    async def create_channel(self, name: str, webhook_id: str, queue_id: str) -> Channel:
        """Create a ChatAPI channel. Not retried after 8x8 may have seen it."""
        answer = await self._caller.call(
            "create_channel",
            "POST",
            self._url("channels"),
            json_body=channel_body(name, webhook_id, queue_id) | {"type": "ChatAPI"},
            retry_on=Retry.UNSENT_ONLY,
        )
        return channel_from_wire(answer)

    async def get_channel(self, channel_id: str) -> Channel:
        """One channel; NotFound if it does not exist."""
        return channel_from_wire(
            await self._caller.call("get_channel", "GET", self._url("channels", channel_id))
        )

    async def update_channel(
        self, channel_id: str, name: str, webhook_id: str, queue_id: str
    ) -> Channel:
        """Replace a channel's name, webhook and queue."""
        answer = await self._caller.call(
            "update_channel",
            "PUT",
            self._url("channels", channel_id),
            json_body=channel_body(name, webhook_id, queue_id) | {"type": "ChatAPI"},
        )
        return channel_from_wire(answer)

    async def delete_channel(self, channel_id: str) -> None:
        """Delete a channel."""
        await self._caller.call("delete_channel", "DELETE", self._url("channels", channel_id))

    async def close(self) -> None:
        """Release the HTTP session (if this client created it)."""
        await self._transport.close()

    async def _list(
        self,
        operation: str,
        url: str,
        collection: str,
        params: Mapping[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """All items of a HAL list, page by page (`_embedded.<collection>`, `page`)."""
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


# --- wire helpers shared with chat_v2 ---


def policy_for(config: EightByEightConfig) -> RetryPolicy:
    """The retry policy from the configured bounds (about 10 s in all by default)."""
    return RetryPolicy(max_attempts=config.max_attempts, total_budget_s=config.total_budget_s)


def jwk_policy(config: EightByEightConfig) -> RetryPolicy:
    """Key fetches run while 8x8 waits for our webhook answer, and the gateway may try two
    paths: two attempts each, within half the budget each."""
    return RetryPolicy(max_attempts=2, total_budget_s=config.total_budget_s / 2)


def segment(value: str) -> str:
    """One URL path segment. 8x8 ids are opaque (spec §6.17); quoting keeps a strange one,
    or a forged JWK kid from a webhook header, from changing the path."""
    return quote(value, safe="")


def obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: 8x8 documents shapes loosely."""
    return value if isinstance(value, dict) else {}


def objects(value: Any) -> list[dict[str, Any]]:
    """The JSON objects in a list (anything else is skipped)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def text_or_none(value: Any) -> str | None:
    """A string field (numbers as text, since some 8x8 examples send ids as numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    return str(value) if isinstance(value, str | int | float) else None


def created_from_wire(answer: Any, time_field: str) -> CreatedConversation:
    """The 202 answer of a create; its conversation id is required."""
    conversation_id = text_or_none(obj(answer).get("conversationId"))
    if not conversation_id:
        # 8x8 accepted the create, so it may exist: never retried, and loud enough to find.
        log.warning("8x8 create_conversation: 2xx answer without a conversationId")
        raise PermanentUpstreamError("8x8 create_conversation: answer has no conversationId")
    return CreatedConversation(
        ConversationId(conversation_id), text_or_none(answer.get(time_field))
    )


def webhook_body(name: str, uri: str, version: str) -> dict[str, str]:
    """Create/update body. `version` is the defined field; the schema's `required` list
    names `notificationVersion`, a documentation bug (spec §2.3, §6.4)."""
    return {"name": name, "uri": uri, "version": version}


def webhook_from_wire(answer: Any) -> Webhook:
    """A webhook object (same shape in both APIs)."""
    body = obj(answer)
    webhook_id, name = text_or_none(body.get("id")), text_or_none(body.get("name"))
    if webhook_id is None:
        raise PermanentUpstreamError("8x8 webhook: answer has no id")
    return Webhook(
        id=webhook_id,
        name=name or "",
        uri=text_or_none(body.get("uri")) or "",
        version=text_or_none(body.get("version")),
    )


def channel_body(name: str, webhook_id: str, queue_id: str) -> dict[str, Any]:
    """Create/update body (the gateway adds `type`)."""
    return {
        "name": name,
        "webHookId": webhook_id,
        "routingOptions": {"type": "queue", "id": queue_id},
    }


def channel_from_wire(answer: Any) -> Channel:
    """A channel object (same shape in both APIs; the gateway adds `type`)."""
    body = obj(answer)
    channel_id = text_or_none(body.get("id"))
    if channel_id is None:
        raise PermanentUpstreamError("8x8 channel: answer has no id")
    return Channel(
        id=channel_id,
        name=text_or_none(body.get("name")) or "",
        webhook_id=text_or_none(body.get("webHookId")),
        queue_id=text_or_none(obj(body.get("routingOptions")).get("id")),
        type=text_or_none(body.get("type")),
    )
