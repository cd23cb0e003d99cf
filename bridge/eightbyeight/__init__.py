"""Everything 8x8: one `ChatClient` over both API families, and webhook verification.

`make_client` picks the implementation from `EightByEightConfig.api`, once; nothing else in
the bridge needs to know which API family is behind the interface.
"""

from __future__ import annotations

import aiohttp

from bridge.eightbyeight.chat_v2 import ChatV2Client
from bridge.eightbyeight.client import (
    HISTORY_LIMIT,
    Author,
    Channel,
    ChatClient,
    Conversation,
    ConversationMessage,
    CreatedConversation,
    Customer,
    HistoryMessage,
    Webhook,
    trim_history,
)
from bridge.eightbyeight.config import ApiFamily, EightByEightConfig, Region
from bridge.eightbyeight.errors import TokenRejected
from bridge.eightbyeight.gateway import GatewayClient
from bridge.eightbyeight.verify import KeyFetchUnavailable, WebhookVerifier

__all__ = [
    "HISTORY_LIMIT",
    "ApiFamily",
    "Author",
    "Channel",
    "ChatClient",
    "ChatV2Client",
    "Conversation",
    "ConversationMessage",
    "CreatedConversation",
    "Customer",
    "EightByEightConfig",
    "GatewayClient",
    "HistoryMessage",
    "KeyFetchUnavailable",
    "Region",
    "TokenRejected",
    "Webhook",
    "WebhookVerifier",
    "make_client",
    "trim_history",
]


def make_client(
    config: EightByEightConfig, session: aiohttp.ClientSession | None = None
) -> ChatClient:
    """The client for `config.api`.

    Args:
        config: Connection settings.
        session: An aiohttp session to share; when omitted the client creates its own, and
            its `close()` closes it. A passed-in session is never closed by the client.

    Raises:
        ConfigError: chat-v2 without a tenant or secret.
    """
    if config.api == "chat-v2":
        return ChatV2Client(config, session)
    return GatewayClient(config, session)
