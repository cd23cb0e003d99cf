"""Identifiers and times in the shapes 8x8 uses (spec §6.17, §6.18)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime


def random_id() -> str:
    """22 url-safe characters (16 random bytes), like 8x8's event and conversation ids."""
    return secrets.token_urlsafe(16)


def reference_id() -> str:
    """15 hex digits, like the `referenceId` of 8x8's error bodies."""
    return secrets.token_hex(8)[:15]


def interaction_id(tenant_id: str, at_ms: int) -> str:
    """Shaped like 8x8's `int-170392a3b7d-5qyRMnJL6nw63SLHrfQirLO3C-chat-00-tenant01`."""
    return f"int-{at_ms:x}-{secrets.token_urlsafe(18)}-chat-00-{tenant_id}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, as 8x8 writes resource times."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
