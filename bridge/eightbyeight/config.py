"""What the 8x8 layer needs to know, independent of how the bridge is configured."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

ApiFamily = Literal["gateway", "chat-v2"]
Region = Literal["us", "eu", "ca", "ap"]


@dataclass(frozen=True)
class EightByEightConfig:
    """Connection settings for one 8x8 tenant, for either API family."""

    api: ApiFamily
    base_url: str
    api_key: SecretStr
    channel_id: str
    api_secret: SecretStr | None = None
    tenant_id: str | None = None
    region: Region = "us"
    auth_url: str | None = None
    queue_id: str | None = None
    # Bounds on one logical call (all attempts included). The actions run while Rasa waits,
    # so their budget is about 10 s in all (architecture.md, "User -> 8x8").
    request_timeout_s: float = 5.0
    total_budget_s: float = 10.0
    max_attempts: int = 4

    @property
    def token_url(self) -> str:
        return self.auth_url or f"{self.base_url.rstrip('/')}/oauth/v2/token"
