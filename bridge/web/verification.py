"""The webhook's signature verifier, built from settings (None when verification is off)."""

from __future__ import annotations

from collections.abc import Callable

from bridge.eightbyeight.client import ChatClient
from bridge.eightbyeight.verify import KeyFetchUnavailable, WebhookVerifier
from bridge.errors import SignatureError
from bridge.settings import Settings


def _is_transient(exc: SignatureError) -> bool:
    return isinstance(exc, KeyFetchUnavailable)


def make_verifier(
    settings: Settings, chat: ChatClient
) -> tuple[WebhookVerifier | None, Callable[[SignatureError], bool]]:
    if not settings.eightbyeight_verify_signatures:
        return None, _is_transient
    verifier = WebhookVerifier(
        chat.fetch_jwk,
        max_skew_s=settings.eightbyeight_max_clock_skew_s,
        tenant_id=settings.eightbyeight_tenant_id or None,
    )
    return verifier, _is_transient
