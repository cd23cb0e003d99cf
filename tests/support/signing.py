"""Signing arbitrary webhook bodies as 8x8 (the simulator's key) or as a forger would."""

from __future__ import annotations

import secrets
import time

from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.eightbyeight.signature import HEADER_SIGNATURE, SignedHeaders, detached_payload, sign
from bridge.simulator import Simulator


def signed_headers(
    sim: Simulator,
    body: bytes,
    *,
    event_id: str | None = None,
    tt_ms: int | None = None,
    key: rsa.RSAPrivateKey | None = None,
    kid: str | None = None,
) -> dict[str, str]:
    """Headers as 8x8 sends them; with `key`/`kid`, signed by someone else."""
    signed = SignedHeaders(
        customer_id=sim.config.customer_id,
        event_id=event_id or secrets.token_urlsafe(16),
        retry=0,
        tenant_id=sim.config.tenant_id,
        transmission_time_ms=tt_ms if tt_ms is not None else int(time.time() * 1000),
    )
    payload = detached_payload(body, signed)
    signature = sign(key, kid or sim.kid, payload) if key is not None else sim.keys.sign(payload)
    return {**signed.as_headers(), HEADER_SIGNATURE: signature, "content-type": "application/json"}
