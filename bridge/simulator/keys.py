"""The simulator's signing keys (spec §3.9, §6.13).

Each simulator makes a fresh RSA-2048 key, and a key's `kid` is its RFC 7638 thumbprint: a
restarted simulator's new key therefore has a new kid and is never hidden behind a JWK the
bridge cached for the old one. Rotated-out keys stay published, as a real key service keeps
serving old keys for events still in flight.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.eightbyeight.signature import jwk_thumbprint, public_jwk, sign


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class SigningKeys:
    def __init__(self) -> None:
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self.kid = self.rotate()

    def rotate(self) -> str:
        """Make a new key the signing key; return its kid."""
        key = _new_key()
        kid = jwk_thumbprint(key.public_key())
        self._keys[kid] = key
        self.kid = kid
        return kid

    def sign(self, payload: bytes) -> str:
        """The `x-8x8-signature` value for a detached payload, with the current key."""
        return sign(self._keys[self.kid], self.kid, payload)

    def jwk(self, kid: str) -> dict[str, str] | None:
        key = self._keys.get(kid)
        return public_jwk(key.public_key(), kid) if key else None
