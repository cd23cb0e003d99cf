"""Webhooks and channels: one registry behind both APIs' CRUD routes (spec §2.3, §2.5, §4.3, §4.4).

Ids are small decimal strings, as in 8x8's examples ("12", "25"), except that the seeded
channel keeps the id configured for it. A webhook cannot be deleted while a channel uses it
([INFERRED]; 8x8 does not say): a channel without a webhook would have nowhere to send events.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass(slots=True)
class WebhookRecord:
    id: str
    name: str
    uri: str
    version: str  # "Chat Gateway v1.0", "v2.0" (or "v1.0")


@dataclass(slots=True)
class ChannelRecord:
    id: str
    name: str
    webhook_id: str
    queue_id: str
    type: str = "ChatAPI"


class InUse(Exception):
    """The webhook is still the target of a channel."""


class Provisioning:
    def __init__(self) -> None:
        self.webhooks: dict[str, WebhookRecord] = {}
        self.channels: dict[str, ChannelRecord] = {}
        self._ids = itertools.count(1)

    def _next_id(self) -> str:
        taken = self.webhooks.keys() | self.channels.keys()
        while (candidate := str(next(self._ids))) in taken:
            pass
        return candidate

    def add_webhook(self, name: str, uri: str, version: str) -> WebhookRecord:
        record = WebhookRecord(self._next_id(), name, uri, version)
        self.webhooks[record.id] = record
        return record

    def delete_webhook(self, webhook_id: str) -> None:
        users = [c.id for c in self.channels.values() if c.webhook_id == webhook_id]
        if users:
            raise InUse(f"webhook {webhook_id} is used by channel(s) {', '.join(users)}")
        del self.webhooks[webhook_id]

    def add_channel(
        self, name: str, webhook_id: str, queue_id: str, type_: str = "ChatAPI", id_: str = ""
    ) -> ChannelRecord:
        record = ChannelRecord(id_ or self._next_id(), name, webhook_id, queue_id, type_)
        self.channels[record.id] = record
        return record

    def webhook_uri_for(self, channel_id: str) -> str | None:
        """Where the channel's events go, or None when it has no usable webhook."""
        channel = self.channels.get(channel_id)
        webhook = self.webhooks.get(channel.webhook_id) if channel else None
        return webhook.uri if webhook and webhook.uri else None
