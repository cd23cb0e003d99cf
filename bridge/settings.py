"""The bridge's configuration: the contract's environment variables, read once, typed.

Every variable of bridge-contract.md is here with its documented default; further settings
follow the same naming style and are listed in the README.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.agent_names import DEFAULT_MESSAGE_FORMAT, check_message_format
from bridge.eightbyeight.client import HISTORY_LIMIT
from bridge.eightbyeight.config import ApiFamily, EightByEightConfig, Region
from bridge.eightbyeight.realtime import PATH as RTM_PATH
from bridge.eightbyeight.realtime import RealtimeConfig
from bridge.errors import ConfigError
from bridge.handoff import Timing
from bridge.hours import OpeningHours, load_hours
from bridge.rasa.pushline import parse_base_url


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

    # --- the handoff as users live it (issue 12): timers and opening hours; 0 turns one off ---
    handoff_queue_timeout_s: int = Field(600, ge=0)  # no agent joined: back to the bot
    handoff_queue_reminder_s: int = Field(120, ge=0)  # a reminder this often while waiting
    handoff_agent_silence_s: int = Field(300, ge=0)  # the user waits this long: still connected
    handoff_user_silence_s: int = Field(900, ge=0)  # the user silent this long: chat closed
    handoff_hours_file: str | None = None  # opening hours (bridge/hours.py); unset: always open

    @field_validator("handoff_hours_file")
    @classmethod
    def _hours_readable(cls, value: str | None) -> str | None:
        if value:
            load_hours(value)  # a ValueError names what is wrong with the file
        return value or None

    def handoff_timing(self) -> Timing:
        """The state machine's timers, from the HANDOFF_*_S settings."""
        return Timing(
            queue_timeout_ms=self.handoff_queue_timeout_s * 1000,
            queue_reminder_ms=self.handoff_queue_reminder_s * 1000,
            agent_silence_ms=self.handoff_agent_silence_s * 1000,
            user_silence_ms=self.handoff_user_silence_s * 1000,
        )

    def opening_hours(self) -> OpeningHours | None:
        return load_hours(self.handoff_hours_file) if self.handoff_hours_file else None

    # --- operations: logs and dead letters ---
    # Key of the hash that stands for a sender id in logs above debug; unset: derived from
    # EIGHTBYEIGHT_API_KEY, so every process of a deployment hashes alike.
    log_id_key: SecretStr | None = None
    dead_letter_max_age_s: int = Field(30 * 86400, ge=3600)  # older dead letters are trimmed

    # --- recovery of what 8x8 gave up on (bridge/recovery/) ---
    recovery_interval_s: float = Field(60.0, gt=0)  # between periodic sweeps
    # How long a message (or join/leave) must have been missing before it is recovered: longer
    # than 8x8 may still retry its webhook event, or the late event would show it twice.
    recovery_horizon_s: float = Field(300.0, ge=0)
    recovery_max_conversations: int = Field(50, ge=1)  # live handoffs looked at per sweep
    recovery_calls_per_s: float = Field(5.0, gt=0)  # 8x8 calls a sweep makes per second

    def log_id_secret(self) -> bytes | None:
        """The key `bridge.logs.mask_sender` uses, derived (never the secret itself)."""
        from bridge.logs import derive_id_key

        secret = self.log_id_key or self.eightbyeight_api_key
        return derive_id_key(secret.get_secret_value()) if secret else None

    # --- the public edge (docs/security.md) ---
    # Required by /webhook, /actions and /metrics; comma-separated to rotate without downtime.
    bridge_action_token: SecretStr | None = None
    # An idle connection, or a request whose headers or body have not all arrived, is closed
    # after this (slow clients must not hold connections, and so file descriptors).
    bridge_client_timeout_s: float = Field(15.0, gt=0, le=300)

    # --- the bot's own action server (add-to-bot sets it up) ---
    bridge_action_upstream: str | None = None  # its /webhook URL: other actions go there
    # Rasa's own action call timeout (rasa 3.6 DEFAULT_REQUEST_TIMEOUT), so no action is cut
    # shorter than it would be without the bridge in between.
    bridge_action_upstream_timeout_s: float = Field(300.0, gt=0)

    @field_validator("eightbyeight_base_url", "rasa_url")
    @classmethod
    def _strip_url(cls, url: str) -> str:
        return url.rstrip("/")

    @field_validator("rasa_url")
    @classmethod
    def _rasa_url_usable(cls, url: str) -> str:
        # At start, as the URL's fault: else every push would fail and be retried until
        # dead-lettered, and the other calls would fail their actions.
        parse_base_url(url)
        return url

    @field_validator("bridge_action_token")
    @classmethod
    def _tokens_are_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        tokens = _split_tokens(value.get_secret_value())
        if not tokens:
            return None
        if any(len(t) < MIN_TOKEN_CHARS for t in tokens):
            # A guessable token is no protection; the value itself is never echoed.
            raise ValueError(f"each token needs at least {MIN_TOKEN_CHARS} characters")
        return value

    @property
    def action_tokens(self) -> tuple[str, ...]:
        """The accepted action tokens (several while one is being rotated out)."""
        if self.bridge_action_token is None:
            return ()
        return _split_tokens(self.bridge_action_token.get_secret_value())

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

    @property
    def customer_slots(self) -> tuple[str, ...]:
        return tuple(s.strip() for s in self.handoff_customer_slots.split(",") if s.strip())

    def check_for_serve(self) -> None:
        """Raise ConfigError naming the first missing variable `serve` cannot run without,
        including what its public listener needs (`_check_edge`)."""
        self.check_required()
        self._check_edge()

    def check_required(self) -> None:
        """Raise ConfigError naming the first missing variable any process that talks to 8x8
        needs (serve, the operator commands, the stock rasa-sdk server)."""
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

    def _check_edge(self) -> None:
        """Off loopback, the action routes need their token and 8x8 events their signature."""
        if is_loopback(self.bridge_host):
            return
        if not self.action_tokens:
            raise ConfigError(
                "BRIDGE_ACTION_TOKEN", "is required when BRIDGE_HOST is not a loopback address"
            )
        if not self.eightbyeight_verify_signatures:
            raise ConfigError(
                "EIGHTBYEIGHT_VERIFY_SIGNATURES",
                "must be true when BRIDGE_HOST is not a loopback address",
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
            self.check_required()
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


MIN_TOKEN_CHARS = 16


def _split_tokens(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.split(",") if t.strip())


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (a name other than localhost may
    resolve anywhere, so it counts as public)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment (and `.env`); raise ConfigError on a bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        variable = str(err["loc"][0]).upper() if err["loc"] else "configuration"
        # The message never echoes the value: it may be a secret.
        raise ConfigError(variable, err["msg"]) from None
