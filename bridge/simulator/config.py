"""What one simulator instance is: credentials it accepts, where it sends events, how it retries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, get_args

from bridge.eightbyeight.config import ApiFamily

if TYPE_CHECKING:
    from bridge.settings import Settings

DEMO_TENANT = "demo-tenant"
DEMO_CHANNEL = "demo-channel"
DEMO_QUEUE = "101"
# The same on every start, so a bridge configured once for the simulator stays configured.
# Admin Console keys start with "eght_" (spec §1.2). Nothing real: the simulator is local.
DEMO_API_KEY = "eght_simulator-demo-key"
DEMO_API_SECRET = "simulator-demo-secret"


@dataclass(frozen=True)
class SimulatorConfig:
    """Settings of one simulator. Every field has a default so tests name only what they need."""

    api_key: str = "demo-key"
    api_secret: str = "demo-secret"
    tenant_id: str = DEMO_TENANT
    # 8x8's example sends the same value in x-8x8-customer-id and x-8x8-tenant-id (spec §3.9).
    customer_id: str = DEMO_TENANT
    channel_id: str = DEMO_CHANNEL
    queue_id: str = DEMO_QUEUE
    # The Real-time Metrics API's own OAuth client (queue figures, agent names).
    rtm_client_id: str = "demo-rtm-client"
    rtm_client_secret: str = "demo-rtm-secret"
    rtm_made_up: bool = True  # the two above are demo values (the CLI may print them)
    # The default target of webhook events: the seeded webhook of the seeded channel points here.
    webhook_url: str | None = None
    # Which event family webhooks use; both REST APIs are always served.
    api: ApiFamily = "gateway"
    # Chat API v2 token lifetime; `expires_in` says it as a whole-number string (rounded up).
    token_ttl_s: float = 1799
    # Pauses before each retry of a webhook event; after the last one the event is given up.
    delivery_retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
    delivery_timeout_s: float = 5.0
    # Deliver (at least attempt) a conversation's first event before answering its create.
    early_events: bool = False
    # How long a `timeout=True` fault holds a request before answering 504. It only has to
    # outlast the client's timeout; the simulator's shutdown releases it early.
    fault_hang_s: float = 30.0
    # Names of the settings from_settings() made up because they were unset.
    made_up: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.api not in get_args(ApiFamily):
            raise ValueError(f"api must be one of {get_args(ApiFamily)}, not {self.api!r}")
        for name in ("api_key", "api_secret", "tenant_id", "customer_id", "channel_id", "queue_id",
                     "rtm_client_id", "rtm_client_secret"):  # fmt: skip
            if not getattr(self, name):
                raise ValueError(f"{name} must not be empty")
        if not (self.token_ttl_s > 0 and math.isfinite(self.token_ttl_s)):
            raise ValueError("token_ttl_s must be a positive number")
        if any(not (d >= 0 and math.isfinite(d)) for d in self.delivery_retry_delays):
            raise ValueError("delivery_retry_delays must be non-negative numbers")
        if not self.delivery_timeout_s > 0:
            raise ValueError("delivery_timeout_s must be positive")
        if not self.fault_hang_s > 0:
            raise ValueError("fault_hang_s must be positive")

    @property
    def demo_values_made_up(self) -> bool:
        """True when from_settings() invented some credentials (the CLI prints them)."""
        return bool(self.made_up)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, webhook_url: str | None = None
    ) -> SimulatorConfig:
        """The simulator that matches a bridge configured with `settings`.

        Unset values are demo values, the same on every start (DEMO_API_KEY, DEMO_API_SECRET,
        tenant "demo-tenant", channel "demo-channel", queue "101"), named in `made_up`. Without `webhook_url`, events go to
        the bridge's own webhook on this machine (`BRIDGE_PORT`, path `/8x8/events`).
        """
        made_up: list[str] = []

        def pick(name: str, value: str | None, demo: str) -> str:
            if value:
                return value
            made_up.append(name)
            return demo

        key = settings.eightbyeight_api_key
        secret = settings.eightbyeight_api_secret
        rtm_id, rtm_secret = (
            settings.eightbyeight_rtm_client_id,
            settings.eightbyeight_rtm_client_secret,
        )
        tenant = pick("EIGHTBYEIGHT_TENANT_ID", settings.eightbyeight_tenant_id, DEMO_TENANT)
        return cls(
            api_key=pick(
                "EIGHTBYEIGHT_API_KEY",
                key.get_secret_value() if key else None,
                DEMO_API_KEY,
            ),
            api_secret=pick(
                "EIGHTBYEIGHT_API_SECRET",
                secret.get_secret_value() if secret else None,
                DEMO_API_SECRET,
            ),
            tenant_id=tenant,
            customer_id=tenant,
            channel_id=pick(
                "EIGHTBYEIGHT_CHANNEL_ID", settings.eightbyeight_channel_id, DEMO_CHANNEL
            ),
            # Not in `made_up`: the bridge needs no queue id to talk to the simulator.
            queue_id=settings.eightbyeight_queue_id or DEMO_QUEUE,
            rtm_client_id=rtm_id.get_secret_value() if rtm_id else "demo-rtm-client",
            rtm_client_secret=rtm_secret.get_secret_value() if rtm_secret else "demo-rtm-secret",
            rtm_made_up=rtm_id is None or rtm_secret is None,
            webhook_url=webhook_url or f"http://127.0.0.1:{settings.bridge_port}/8x8/events",
            api=settings.eightbyeight_api,
            made_up=tuple(made_up),
        )
