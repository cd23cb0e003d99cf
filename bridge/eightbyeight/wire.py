"""Wire helpers both 8x8 API families share: retry policies, URL segments, lenient JSON
readers, and the webhook and channel objects (same shape in both, spec §2.3-2.5, §4.3-4.4)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bridge.eightbyeight.client import Channel, CreatedConversation, Participant, Webhook
from bridge.eightbyeight.config import EightByEightConfig
from bridge.errors import PermanentUpstreamError
from bridge.ids import ConversationId
from bridge.retry import RetryPolicy

log = logging.getLogger(__name__)

PAGE_SIZE = 50
MAX_PAGES = 100  # a guard against a server whose page counts never end
MAX_CUSTOM_PROPERTIES = 30  # 8x8's limit on custom customer data (spec §2.6, §4.5)


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


def epoch_ms(value: Any) -> int | None:
    """An 8x8 time (ISO-8601, or epoch ms as a number or text) in epoch ms; None if unreadable."""
    text = text_or_none(value)
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def participants_from_wire(items: list[dict[str, Any]]) -> list[Participant]:
    out = []
    for item in items:
        pid = text_or_none(item.get("id"))
        removed = item.get("removed")
        if pid:
            kind = text_or_none(item.get("type")) or "unknown"
            out.append(Participant(pid, kind, removed if isinstance(removed, bool) else None))
    return out


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


def channel_body(
    name: str, webhook_id: str, queue_id: str, channel_type: str | None = None
) -> dict[str, Any]:
    """Create/update body; `type` last, and only when given (the gateway's "ChatAPI")."""
    body: dict[str, Any] = {
        "name": name,
        "webHookId": webhook_id,
        "routingOptions": {"type": "queue", "id": queue_id},
    }
    if channel_type is not None:
        body["type"] = channel_type
    return body


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
