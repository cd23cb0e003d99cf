"""The bridge's configuration: the contract's environment variables, read once, typed.

Every variable of bridge-contract.md is here with its documented default; further settings
follow the same naming style and are listed in the README.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.eightbyeight.config import ApiFamily, EightByEightConfig, Region
from bridge.errors import ConfigError


class Settings(BaseSettings):
    """All settings. Field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,  # read once; every part of the process sees the same values
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
    # Unset: a live handoff ends only on an explicit /end_handoff; NLU never ends it.
    handoff_end_threshold: float | None = Field(None, ge=0.0, le=1.0)

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

    # --- the bot's own action server (add-to-bot sets it up) ---
    bridge_action_upstream: str | None = None  # its /webhook URL: other actions go there
    # Rasa's own action call timeout (rasa 3.6 DEFAULT_REQUEST_TIMEOUT), so no action is cut
    # shorter than it would be without the bridge in between.
    bridge_action_upstream_timeout_s: float = Field(300.0, gt=0)

    @field_validator("eightbyeight_base_url", "rasa_url")
    @classmethod
    def _strip_url(cls, url: str) -> str:
        return url.rstrip("/")

    @property
    def customer_slots(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.handoff_customer_slots.split(",") if s.strip())

    def check_for_serve(self) -> None:
        """Raise ConfigError naming the first missing variable `serve` cannot run without."""
        if self.eightbyeight_api_key is None:
            raise ConfigError("EIGHTBYEIGHT_API_KEY", "is required")
        if not self.eightbyeight_channel_id:
            raise ConfigError("EIGHTBYEIGHT_CHANNEL_ID", "is required")
        if self.eightbyeight_api == "chat-v2":
            if self.eightbyeight_api_secret is None:
                raise ConfigError(
                    "EIGHTBYEIGHT_API_SECRET", "is required when EIGHTBYEIGHT_API=chat-v2"
                )
            if not self.eightbyeight_tenant_id:
                raise ConfigError(
                    "EIGHTBYEIGHT_TENANT_ID", "is required when EIGHTBYEIGHT_API=chat-v2"
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
