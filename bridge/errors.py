"""The bridge's exception tree. Only the web layer turns these into HTTP statuses."""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """Settings are missing or invalid. `variable` names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class SignatureError(BridgeError):
    """A webhook event's signature is missing, malformed, stale or does not verify."""


class StoreUnavailable(BridgeError):
    """The store (Redis) cannot be reached or did not answer in time."""


class StaleClaim(StoreUnavailable):
    """The webhook's enqueue came too long after its claim (keys.MAX_CLAIM_TO_ENQUEUE_MS): not
    written; 8x8's retry starts again with a fresh claim. Answered like an unavailable store."""


class UpstreamError(BridgeError):
    """A remote API (8x8 or Rasa) answered with an error or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after_s = retry_after_s


class RetryableUpstreamError(UpstreamError):
    """Worth trying again later: connection errors, timeouts, 429, 5xx."""


class PermanentUpstreamError(UpstreamError):
    """Trying again will not help: 4xx other than 429 (and 401 after one refresh)."""


class AuthError(PermanentUpstreamError):
    """Credentials were refused (401/403)."""


class NotFound(PermanentUpstreamError):
    """The remote resource (conversation, webhook, channel, key) does not exist."""


class RequestNotSent(RetryableUpstreamError):
    """The request provably never reached the server (connect failed): safe to retry even a
    non-idempotent create."""
