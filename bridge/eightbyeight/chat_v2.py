"""`ChatClient` over the legacy Contact Center Chat API v2 (spec §2), deprecated by 8x8 but
kept behind the same interface for tenants still on it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from bridge.eightbyeight.auth import TokenAuth
from bridge.eightbyeight.client import (
    Author,
    Conversation,
    ConversationMessage,
    CreatedConversation,
    Customer,
    HistoryMessage,
    Interaction,
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
    epoch_ms,
    jwk_policy,
    obj,
    objects,
    participants_from_wire,
    policy_for,
    segment,
    text_or_none,
)
from bridge.errors import ConfigError, PermanentUpstreamError
from bridge.ids import ConversationId

log = logging.getLogger(__name__)

WEBHOOK_VERSION = "v2.0"  # v2.0 webhooks are the signed ones (spec §2.3)


class ChatV2Client(Provisioning):
    """Chat API v2: OAuth bearer token, `{data, page}` lists, region and tenant in paths."""

    WEBHOOKS = "web-hooks"
    WEBHOOK_VERSION = WEBHOOK_VERSION

    def __init__(
        self, config: EightByEightConfig, session: aiohttp.ClientSession | None = None
    ) -> None:
        if not config.tenant_id:
            raise ConfigError("EIGHTBYEIGHT_TENANT_ID", "required for EIGHTBYEIGHT_API=chat-v2")
        if config.api_secret is None or not config.api_secret.get_secret_value():
            raise ConfigError("EIGHTBYEIGHT_API_SECRET", "required for EIGHTBYEIGHT_API=chat-v2")
        self._config = config
        self._api = f"{config.base_url.rstrip('/')}/vcc/{segment(config.region)}/chat/v2"
        self._tenant = config.tenant_id
        self._transport = Transport(session=session)
        auth = TokenAuth(
            self._transport,
            config.token_url,
            config.api_key,
            config.api_secret,
            request_timeout_s=config.request_timeout_s,
        )
        self._caller = Caller(
            self._transport,
            auth,
            request_timeout_s=config.request_timeout_s,
            policy=policy_for(config),
        )

    def _url(self, *segments: str) -> str:
        """A tenant-scoped URL."""
        path = "".join("/" + segment(s) for s in ("tenant", self._tenant, *segments))
        return self._api + path

    # --- conversations ---

    async def create_conversation(
        self,
        customer: Customer,
        history: Sequence[HistoryMessage] = (),
        *,
        channel_id: str | None = None,
        queue_id: str | None = None,
    ) -> CreatedConversation:
        """Open a conversation in the channel's queue (v2 cannot choose another queue, so
        `queue_id` is ignored). Retried only when 8x8 cannot have seen it, or answered 429."""
        if queue_id:
            log.debug("chat-v2 routes by channel only; queue_id %s ignored", queue_id)
        body: dict[str, Any] = {
            "channelId": channel_id or self._config.channel_id,
            "customer": customer_body(customer),
        }
        if messages := trim_history(history):
            # v2 history items use `type`, not `authorType` (spec §2.6)
            body["history"] = {"messages": [{"type": m.author, "text": m.text} for m in messages]}
        answer = await self._caller.call(
            "create_conversation",
            "POST",
            self._url("conversations"),
            json_body=body,
            retry_on=Retry.UNSENT_ONLY,
        )
        return created_from_wire(answer, "timestamp")

    async def send_message(
        self, conversation_id: ConversationId, text: str, *, author: Author = "user"
    ) -> None:
        """Post a user or bot message (202); after the interaction ended this reopens it."""
        await self._caller.call(
            "send_message",
            "POST",
            self._url("conversations", conversation_id, "messages"),
            json_body={"authorType": author, "text": text},
        )

    async def leave(self, conversation_id: ConversationId) -> None:
        """The customer leaves: `DELETE participants/customer` ends the interaction."""
        await self._caller.call(
            "leave",
            "DELETE",
            self._url("conversations", conversation_id, "participants", "customer"),
        )

    async def get_conversation(self, conversation_id: ConversationId) -> Conversation:
        """The conversation resource. v2 reports no state (spec §6.7): `state` is None."""
        body = obj(
            await self._caller.call(
                "get_conversation", "GET", self._url("conversations", conversation_id)
            )
        )
        interactions = tuple(
            Interaction(iid, epoch_ms(i.get("startTime")), epoch_ms(i.get("endTime")))
            for i in objects(body.get("interactions"))
            if (iid := text_or_none(i.get("id")))
        )
        return Conversation(
            id=ConversationId(text_or_none(body.get("id")) or conversation_id),
            channel_id=text_or_none(body.get("channelId")),
            state=None,
            customer=obj(body.get("customer")),
            interaction_ids=tuple(i.id for i in interactions),
            interactions=interactions,
        )

    async def list_participants(self, conversation_id: ConversationId) -> list[Participant]:
        """Everyone who took part (an array, or the one object the OAS declares: spec §6.6).
        v2 does not say who left: `removed` is None."""
        body = obj(
            await self._caller.call(
                "participants", "GET", self._url("conversations", conversation_id, "participants")
            )
        )
        found = body.get("participants")
        return participants_from_wire(objects(found if isinstance(found, list) else [found]))

    async def list_messages(self, conversation_id: ConversationId) -> list[ConversationMessage]:
        """Every message as written (`originalText`, not the auto-translation)."""
        body = obj(
            await self._caller.call(
                "list_messages", "GET", self._url("conversations", conversation_id, "messages")
            )
        )
        return [_message_from_wire(item) for item in objects(body.get("messages"))]

    async def fetch_jwk(self, kid: str) -> dict[str, Any]:
        """The public JWK `kid` (no credentials)."""
        answer = await self._caller.call(
            "fetch_jwk",
            "GET",
            f"{self._api}/jwk/{segment(kid)}/public",
            authenticated=False,
            policy=jwk_policy(self._config),
        )
        if not isinstance(answer, dict):
            raise PermanentUpstreamError("8x8 fetch_jwk: response is not a JWK object")
        return answer

    async def close(self) -> None:
        """Release the HTTP session (if this client created it)."""
        await self._transport.close()

    async def _list(self, operation: str, collection: str) -> list[dict[str, Any]]:
        """All items of a `{data, page}` list, page by page (`page` is 0-based)."""
        items: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            query = {"page": str(page), "size": str(PAGE_SIZE)}
            body = obj(
                await self._caller.call(operation, "GET", self._url(collection), params=query)
            )
            found = objects(body.get("data"))
            items.extend(found)
            total = obj(body.get("page")).get("pageCount")
            if not found or not isinstance(total, int) or page + 1 >= total:
                break
        return items


def _message_from_wire(item: dict[str, Any]) -> ConversationMessage:
    text = item.get("originalText")
    if text is None:
        text = item.get("text")  # lenient: the schema's `required` list is garbled (spec §2.6)
    return ConversationMessage(
        text=text_or_none(text) or "",
        author_type=text_or_none(item.get("authorType")) or "unknown",
        interaction_id=text_or_none(item.get("interactionId")),
    )


def customer_body(customer: Customer) -> dict[str, str]:
    """The v2 `customer` object: flat string keys, predefined ones first, at most 30."""
    fields = {
        "name": customer.name,
        "customerId": customer.user_id,
        "email": customer.email,
        "phone": customer.phone,
        "company": customer.company,
        "caseId": customer.case_id,
        "language": customer.language,
    }
    body = {key: value for key, value in fields.items() if value}
    for key, value in customer.extra:
        if len(body) >= MAX_CUSTOM_PROPERTIES:
            break
        # a custom key never overrides a predefined one the bridge set on purpose
        if key and value and key not in body:
            body[key] = value
    return body
