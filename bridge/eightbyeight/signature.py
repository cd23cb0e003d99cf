"""8x8 webhook signatures (spec §3.9): JWS RS256, detached and unencoded (RFC 7797).

The signed payload is rebuilt from the CRC32 of the raw body and six `x-8x8-*` headers. This
module holds both sides, signing (for the simulator) and verifying (for the webhook), so the
simulator cannot drift from what the bridge checks.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bridge.errors import SignatureError

HEADER_CUSTOMER = "x-8x8-customer-id"
HEADER_EVENT = "x-8x8-event-id"
HEADER_RETRY = "x-8x8-retry"
HEADER_SIGNATURE = "x-8x8-signature"
HEADER_TENANT = "x-8x8-tenant-id"
HEADER_TIME = "x-8x8-transmission-time"


# Every header the signature depends on, itself included: each must appear exactly once.
SIGNED_HEADER_NAMES = frozenset(
    {HEADER_CUSTOMER, HEADER_EVENT, HEADER_RETRY, HEADER_SIGNATURE, HEADER_TENANT, HEADER_TIME}
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# A byte table: str.translate looks every character up in a dict (a signature's 344 of them
# cost more than the decoding).
_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")


def b64url_decode(text: str) -> bytes:
    # base64.urlsafe_b64decode, without its layers: the same translation, then the same
    # lenient decoder (characters outside the alphabet are skipped, as there). Non-ASCII text
    # is refused, as a2b_base64 refuses it (UnicodeEncodeError is a ValueError).
    try:
        data = text.encode("ascii")
        return binascii.a2b_base64((data + b"=" * (-len(data) % 4)).translate(_FROM_URLSAFE))
    except (ValueError, TypeError) as exc:
        raise SignatureError("malformed base64url") from exc


def checksum(body: bytes) -> int:
    """CRC32 of the raw body bytes, unsigned (spec §3.9, checked on the documented example)."""
    return zlib.crc32(body) & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class SignedHeaders:
    """The five signed header values besides the signature itself."""

    customer_id: str
    event_id: str
    retry: int
    tenant_id: str
    transmission_time_ms: int

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> SignedHeaders:
        """Read them from a case-insensitive header mapping; SignatureError if one is off."""
        values: dict[str, str] = {}
        for name in (HEADER_CUSTOMER, HEADER_EVENT, HEADER_RETRY, HEADER_TENANT, HEADER_TIME):
            value = headers.get(name)
            if value is None or value == "":
                raise SignatureError(f"missing header {name}")
            if not (value.isascii() or _is_utf8(value)):  # isascii(): a flag, no copy
                # A header byte that is not UTF-8 reaches us surrogate-escaped; 8x8 signs UTF-8
                # JSON, so it cannot have signed this value.
                raise SignatureError(f"header {name} is not valid UTF-8")
            values[name] = value
        # 8x8 sends plain decimal longs; int() alone would also take "1_0", " 1", Arabic-Indic
        # digits and numbers too large for the clock check's float arithmetic.
        if not (_is_long(values[HEADER_RETRY]) and _is_long(values[HEADER_TIME])):
            raise SignatureError("x-8x8-retry and x-8x8-transmission-time must be integers")
        retry, tt = int(values[HEADER_RETRY]), int(values[HEADER_TIME])
        return cls(values[HEADER_CUSTOMER], values[HEADER_EVENT], retry, values[HEADER_TENANT], tt)

    def as_headers(self) -> dict[str, str]:
        return {
            HEADER_CUSTOMER: self.customer_id,
            HEADER_EVENT: self.event_id,
            HEADER_RETRY: str(self.retry),
            HEADER_TENANT: self.tenant_id,
            HEADER_TIME: str(self.transmission_time_ms),
        }


def _is_long(text: str) -> bool:
    """1 to 18 ASCII digits: isdigit() alone would take other scripts' digits."""
    return 0 < len(text) <= 18 and text.isascii() and text.isdigit()


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def detached_payload(body: bytes, signed: SignedHeaders) -> bytes:
    """The data to be signed: compact JSON with keys in exactly this order (spec §3.9)."""
    # Written out, not json.dumps(dict, separators=(",", ":"), ensure_ascii=False): the same
    # bytes (its string quoting, ints as decimal) without building a dict and an encoder.
    return (
        f'{{"checksum":{checksum(body)},"cid":{_quoted(signed.customer_id)},'
        f'"eid":{_quoted(signed.event_id)},"retry":{signed.retry},'
        f'"tid":{_quoted(signed.tenant_id)},"tt":{signed.transmission_time_ms}}}'
    ).encode()


# What json.dumps(ensure_ascii=False) writes for a str (quotes and escapes, non-ASCII kept).
_quoted = json.encoder.encode_basestring


def protected_header(kid: str) -> str:
    header = {"b64": False, "crit": ["b64"], "kid": kid, "alg": "RS256"}
    return b64url(json.dumps(header, separators=(",", ":")).encode("utf-8"))


def sign(private_key: rsa.RSAPrivateKey, kid: str, payload: bytes) -> str:
    """A compact detached JWS over `payload`, as 8x8 sends it in `x-8x8-signature`."""
    header = protected_header(kid)
    signature = private_key.sign(
        header.encode("ascii") + b"." + payload, padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{header}..{b64url(signature)}"


@dataclass(frozen=True, slots=True)
class ParsedJws:
    header_b64: str
    kid: str
    signature: bytes


def parse_jws(jws: str) -> ParsedJws:
    """Split and check a detached JWS; only RS256 with b64=false is accepted."""
    parts = jws.split(".")
    if len(parts) != 3 or parts[1] != "":
        raise SignatureError("signature is not a detached compact JWS")
    return ParsedJws(parts[0], _header_kid(parts[0]), b64url_decode(parts[2]))


# 8x8 signs every event with the same protected header (one per signing key): parse it once.
# Only headers that pass are cached (lru_cache does not keep exceptions), and only a few.
@functools.lru_cache(maxsize=16)
def _header_kid(header_b64: str) -> str:
    """The kid of a protected header that is RS256 with b64=false; SignatureError otherwise."""
    try:
        header: Any = json.loads(b64url_decode(header_b64))
    except ValueError:
        raise SignatureError("JWS header is not JSON") from None
    if not isinstance(header, dict):
        raise SignatureError("JWS header is not an object")
    if header.get("alg") != "RS256":
        raise SignatureError("JWS algorithm must be RS256")
    if header.get("b64") is not False or "b64" not in (header.get("crit") or []):
        raise SignatureError("JWS must use an unencoded payload (b64=false, crit=[b64])")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SignatureError("JWS header has no kid")
    return kid


_PKCS1 = padding.PKCS1v15()  # stateless: one each serves every verification
_SHA256 = hashes.SHA256()


def verify_jws(public_key: rsa.RSAPublicKey, jws: ParsedJws, payload: bytes) -> None:
    """Raise SignatureError unless `jws` signs `payload` with `public_key`."""
    try:
        public_key.verify(
            jws.signature, jws.header_b64.encode("ascii") + b"." + payload, _PKCS1, _SHA256
        )
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None


# --- JWK helpers ---


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jwk_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """RFC 7638 thumbprint (SHA-256) of an RSA public key: the simulator's `kid`."""
    numbers = public_key.public_numbers()
    canonical = json.dumps(
        {"e": _int_b64(numbers.e), "kty": "RSA", "n": _int_b64(numbers.n)}, separators=(",", ":")
    )
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(public_key: rsa.RSAPublicKey, kid: str) -> dict[str, str]:
    numbers = public_key.public_numbers()
    return {"kty": "RSA", "e": _int_b64(numbers.e), "kid": kid, "n": _int_b64(numbers.n)}


def jwk_to_public_key(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    """An RSA public key from a JWK object; SignatureError if it is not a usable RSA key."""
    if (
        jwk.get("kty") != "RSA"
        or not isinstance(jwk.get("n"), str)
        or not isinstance(jwk.get("e"), str)
    ):
        raise SignatureError("JWK is not an RSA public key")
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise SignatureError("JWK holds an invalid RSA key") from None
