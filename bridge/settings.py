"""The bridge's configuration: the contract's environment variables, read once, typed.

Every variable of bridge-contract.md is here with its documented default; further settings
follow the same naming style and are listed in the README.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.agent_names import DEFAULT_MESSAGE_FORMAT, check_message_format
from bridge.eightbyeight.client import HISTORY_LIMIT
from bridge.eightbyeight.config import ApiFamily, EightByEightConfig, Region
from bridge.eightbyeight.realtime import PATH as RTM_PATH
from bridge.eightbyeight.realtime import RealtimeConfig
from bridge.errors import ConfigError


class Settings(BaseSettings):
    """All settings. Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- 8x8 ---
    eightbyeight_api: ApiFamily = "gateway"
    eightbyeight_base_url: str = "https://api.8x8.com"
    eightbyeight_auth_url: str | None = None
    eightbyeight_api_key: SecretStr | None = None
    eightbyeight_api_secret: SecretStr | None = None
    eightbyeight_tenant_id: str | None = None
    eightbyeight_region: Region = "us"
    eightbyeight_channel_id: str | None = None
    eightbyeight_queue_id: str | None = None
    eightbyeight_verify_signatures: bool = True
    eightbyeight_max_clock_skew_s: int = Field(300, ge=1)

    # --- store ---
    redis_url: str | None = None
    redis_key_prefix: str = ""  # share one Redis between deployments (or test runs)

    # --- Rasa ---
    rasa_url: str = "http://localhost:5005"
    rasa_token: SecretStr | None = None
    rasa_output_channel: str = "latest"

    # --- the service ---
    bridge_host: str = "0.0.0.0"
    bridge_port: int = Field(5055, ge=1, le=65535)
    bridge_max_body_bytes: int = Field(262144, ge=1024)

    # --- handoff behaviour ---
    handoff_fallbacks: int = Field(2, ge=0)
    handoff_rule: str | None = None
    handoff_customer_slots: str = "name,email"
    handoff_end_threshold: float = Field(0.9, ge=0.0, le=1.0)

    # --- relay and dedupe ---
    relay_max_attempts: int = Field(20, ge=1)
    relay_max_age_s: int = Field(3600, ge=1)
    event_dedupe_ttl_s: int = Field(86400, ge=60)
    # Beyond the contract (README lists them):
    event_hold_s: int = Field(120, ge=1)  # how long events for an unmapped conversation wait
    relay_partitions: int = Field(16, ge=1, le=1024)
    relay_retry_cap_s: float = Field(
        30.0, gt=0
    )  # longest wait between two pushes while Rasa is down
    relay_lease_ttl_ms: int = Field(10_000, ge=500)  # a dead process's partitions move after this
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- names, queue figures and the agent's context ---
    # 8x8's Real-time Metrics API (OAuth client credentials of an "analytics realtime" app):
    # the Gateway agent's name, the queue's length and usual wait. Optional.
    eightbyeight_rtm_client_id: SecretStr | None = None
    eightbyeight_rtm_client_secret: SecretStr | None = None
    eightbyeight_rtm_url: str | None = None  # default {EIGHTBYEIGHT_BASE_URL}/analytics/cc/v5/...
    handoff_agent_message_format: str = DEFAULT_MESSAGE_FORMAT  # how an agent message reads
    handoff_reopen_history: int = Field(20, ge=0, le=HISTORY_LIMIT)  # bot turns sent on reopen

    @field_validator("handoff_agent_message_format")
    @classmethod
    def _message_format(cls, value: str) -> str:
        problem = check_message_format(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _strip_urls(self) -> Settings:
        self.eightbyeight_base_url = self.eightbyeight_base_url.rstrip("/")
        self.rasa_url = self.rasa_url.rstrip("/")
        return self

    @property
    def customer_slots(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.handoff_customer_slots.split(",") if s.strip())

    def check_for_serve(self) -> None:
        """Raise ConfigError naming the first missing variable `serve` cannot run without."""
        if self.eightbyeight_api_key is None:
            raise ConfigError("EIGHTBYEIGHT_API_KEY", "is required")
        if not self.eightbyeight_channel_id:
            raise ConfigError("EIGHTBYEIGHT_CHANNEL_ID", "is required")
        if (self.eightbyeight_rtm_client_id is None) != (
            self.eightbyeight_rtm_client_secret is None
        ):
            raise ConfigError(
                "EIGHTBYEIGHT_RTM_CLIENT_SECRET", "and EIGHTBYEIGHT_RTM_CLIENT_ID go together"
            )
        if self.eightbyeight_api == "chat-v2":
            if self.eightbyeight_api_secret is None:
                raise ConfigError(
                    "EIGHTBYEIGHT_API_SECRET", "is required when EIGHTBYEIGHT_API=chat-v2"
                )
            if not self.eightbyeight_tenant_id:
                raise ConfigError(
                    "EIGHTBYEIGHT_TENANT_ID", "is required when EIGHTBYEIGHT_API=chat-v2"
                )
        if self.event_dedupe_ttl_s < 2 * self.eightbyeight_max_clock_skew_s:
            # A signature is accepted from tt - skew to tt + skew: its event id must stay
            # claimed that long, or the request could be replayed once the claim expired.
            raise ConfigError(
                "EVENT_DEDUPE_TTL_S", "must be at least twice EIGHTBYEIGHT_MAX_CLOCK_SKEW_S"
            )

    def realtime(self) -> RealtimeConfig | None:
        """The Real-time Metrics API's settings, or None when its credentials are not set."""
        client_id, secret = self.eightbyeight_rtm_client_id, self.eightbyeight_rtm_client_secret
        if client_id is None or secret is None:
            return None
        return RealtimeConfig(
            base_url=(self.eightbyeight_rtm_url or self.eightbyeight_base_url + RTM_PATH).rstrip(
                "/"
            ),
            token_url=self.eightbyeight_auth_url or f"{self.eightbyeight_base_url}/oauth/v2/token",
            client_id=client_id,
            client_secret=secret,
            tenant_id=self.eightbyeight_tenant_id,
        )

    def eightbyeight(self) -> EightByEightConfig:
        """The 8x8 layer's view of these settings (call check_for_serve() first)."""
        if self.eightbyeight_api_key is None or not self.eightbyeight_channel_id:
            self.check_for_serve()
        assert self.eightbyeight_api_key is not None and self.eightbyeight_channel_id
        return EightByEightConfig(
            api=self.eightbyeight_api,
            base_url=self.eightbyeight_base_url,
            api_key=self.eightbyeight_api_key,
            channel_id=self.eightbyeight_channel_id,
            api_secret=self.eightbyeight_api_secret,
            tenant_id=self.eightbyeight_tenant_id,
            region=self.eightbyeight_region,
            auth_url=self.eightbyeight_auth_url,
            queue_id=self.eightbyeight_queue_id,
        )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and `.env`); raise ConfigError on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        variable = str(err["loc"][0]).upper() if err["loc"] else "configuration"
        # The message never echoes the value: it may be a secret.
        raise ConfigError(variable, err["msg"]) from None
