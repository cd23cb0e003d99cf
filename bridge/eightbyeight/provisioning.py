"""Webhook and channel CRUD, shared by both API families (spec §2.3-2.5, §4.3-4.4).

The two APIs differ here only in the webhooks path segment, the webhook version, whether a
channel carries a `type`, and the list envelope, which each client's `_list` hides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from bridge.eightbyeight.client import Channel, Webhook
from bridge.eightbyeight.transport import Caller, Retry
from bridge.eightbyeight.wire import (
    channel_body,
    channel_from_wire,
    webhook_body,
    webhook_from_wire,
)


class Provisioning(ABC):
    """The provisioning half of `ChatClient`, over a subclass's `_caller`, `_url` and `_list`."""

    WEBHOOKS: ClassVar[str] = "webhooks"  # the webhooks path segment
    WEBHOOK_VERSION: ClassVar[str]  # the version this client creates webhooks with
    CHANNEL_TYPE: ClassVar[str | None] = None  # a channel's `type`, where the API wants one

    _caller: Caller

    @abstractmethod
    def _url(self, *segments: str) -> str:
        """The URL of these path segments (each one quoted)."""

    @abstractmethod
    async def _list(self, operation: str, collection: str) -> list[dict[str, Any]]:
        """All items of the list at path segment `collection`, every page."""

    async def list_webhooks(self) -> list[Webhook]:
        """Every webhook, all pages."""
        return [webhook_from_wire(i) for i in await self._list("list_webhooks", self.WEBHOOKS)]

    async def create_webhook(self, name: str, uri: str) -> Webhook:
        """Create a webhook of `WEBHOOK_VERSION` (on Chat API v2, v2.0: the signed kind); 8x8
        sends WEB_HOOK_VERIFY to `uri` first. Not retried after 8x8 may have seen it."""
        answer = await self._caller.call(
            "create_webhook",
            "POST",
            self._url(self.WEBHOOKS),
            json_body=webhook_body(name, uri, self.WEBHOOK_VERSION),
            retry_on=Retry.UNSENT_ONLY,
        )
        return webhook_from_wire(answer)

    async def verify_webhook(self, uri: str) -> None:
        """Ask 8x8 to send WEB_HOOK_VERIFY to `uri` now; an error unless `uri` answered 2xx."""
        await self._caller.call(
            "verify_webhook",
            "POST",
            self._url(self.WEBHOOKS, "verify"),
            json_body={"version": self.WEBHOOK_VERSION, "uri": uri},
        )

    async def get_webhook(self, webhook_id: str) -> Webhook:
        """One webhook; NotFound if it does not exist."""
        return webhook_from_wire(
            await self._caller.call("get_webhook", "GET", self._url(self.WEBHOOKS, webhook_id))
        )

    async def update_webhook(self, webhook_id: str, name: str, uri: str) -> Webhook:
        """Replace a webhook's name and URI."""
        answer = await self._caller.call(
            "update_webhook",
            "PUT",
            self._url(self.WEBHOOKS, webhook_id),
            json_body=webhook_body(name, uri, self.WEBHOOK_VERSION),
        )
        return webhook_from_wire(answer)

    async def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook."""
        await self._caller.call("delete_webhook", "DELETE", self._url(self.WEBHOOKS, webhook_id))

    async def list_channels(self) -> list[Channel]:
        """Every channel, all pages (on the gateway, other channel types than ChatAPI too)."""
        return [channel_from_wire(i) for i in await self._list("list_channels", "channels")]

    async def create_channel(self, name: str, webhook_id: str, queue_id: str) -> Channel:
        """Create a channel (of `CHANNEL_TYPE`, if set: ChatAPI on the gateway). Not retried
        after 8x8 may have seen it."""
        answer = await self._caller.call(
            "create_channel",
            "POST",
            self._url("channels"),
            json_body=channel_body(name, webhook_id, queue_id, self.CHANNEL_TYPE),
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
            json_body=channel_body(name, webhook_id, queue_id, self.CHANNEL_TYPE),
        )
        return channel_from_wire(answer)

    async def delete_channel(self, channel_id: str) -> None:
        """Delete a channel."""
        await self._caller.call("delete_channel", "DELETE", self._url("channels", channel_id))
