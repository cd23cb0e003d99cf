"""Webhook signature verification (spec §3.9) with our own keys, and the documented example."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from bridge.eightbyeight.signature import (
    HEADER_CUSTOMER,
    HEADER_EVENT,
    HEADER_RETRY,
    HEADER_SIGNATURE,
    HEADER_TENANT,
    HEADER_TIME,
    SignedHeaders,
    b64url,
    b64url_decode,
    checksum,
    detached_payload,
    jwk_to_public_key,
    parse_jws,
    public_jwk,
    sign,
    verify_jws,
)
from bridge.eightbyeight.verify import (
    FAILED_FETCH_TTL_S,
    UNKNOWN_KID_TTL_S,
    KeyFetchUnavailable,
    WebhookVerifier,
)
from bridge.errors import NotFound, RetryableUpstreamError, SignatureError

NOW_S = 1_629_804_577.296
NOW_MS = 1_629_804_577_296
KID = "key-a"
BODY = b'{"eventType":"MESSAGE","conversationId":"c1","timestamp":1,"data":{"text":"hi"}}'

# --- the documented example (CC-SIG) ---
EXAMPLE_BODY = (
    b'{"eventType":"AGENT_JOINED","messageType":"SYSTEM",'
    b'"conversationId":"Aka5NMHU8MtIG7lUQOxI0DTOvM4","agentId":"cmalutan",'
    b'"agentName":"Cosmin,Malutan","timestamp":1629804577002}'
)
EXAMPLE_SIGNATURE = (
    "eyJiNjQiOmZhbHNlLCJjcml0IjpbImI2NCJdLCJraWQiOiJrZXkxIiwiYWxnIjoiUlMyNTYifQ..O4kXJAvWFtxYZE"
    "RsJX-OkGLYL__7-rtQrm6y9MFwaISGw1timf1QDQpXy6-8095M67-eN-rUQDNwalktIdHs--DBpR-ratQd1bDlrPMR5"
    "CGlsbLFso-KziuqJycBBYmpLIs0JhFihTfoBstduRsQyK-oX0bAu1ZytTVLgmzPkAptlczoS7hsQHfH2QMH8LoEZk99"
    "wKqCNczsnu8bfJllSiMXxzZqYa_ll7i-Wy1myjzdvMArtSggbxqsSdbNRmSQgT6KDbWriJD7ucsEDwuKVe-q9cQMEMU2"
    "tO9aeyDbCMFo-FKXPUPzQ5J8xkQU8nn3tNurKVBB8x_8YJ8s0EKg3g"
)
EXAMPLE_HEADERS = {
    "x-8x8-customer-id": "vccC8ProdChecksUS",
    "x-8x8-event-id": "g4nqGuj8TpCa6tiZ3DeeNw",
    "x-8x8-retry": "0",
    "x-8x8-signature": EXAMPLE_SIGNATURE,
    "x-8x8-tenant-id": "vccC8ProdChecksUS",
    "x-8x8-transmission-time": "1629804577296",
}
SPEC_JWK = {
    "kty": "RSA",
    "e": "AQAB",
    "kid": "EXaiWfZe20eSjklZ70074w",
    "n": "obq8u-Yq9VgIqsfOFftSr-TINYrL8xNWhYhJjYtPp5DTQK3g1_ylCl6HMmRnEgb9wlkNfk9iazvkOU_XvyZSdfHNm"
    "173FlX3YgAPj_snUnCDO1Y0b0M4trK-iGUJP4A_tT4XauI1YJ96rEQAHzfOvsnnniFVqlK5pAMKWnVD4LhRbaEFLOnvM"
    "uNCiB13CPF7ZY4j7Aahf8KKdSiBJDw9um1lw5gfKe2j2DN7UOPm5Msz_is-C343xVaJ81d8W9ihDCX9JgaZEYciol-2"
    "24n6F_gmUMWIfTTCRK3GC2_fnEXXWQbQvACA28Zf40h9iXiWiVdIXFGQgz2lQ7dg4ksUvw",
}


class KeyServer:
    """A `fetch_jwk` backed by a dict, counting fetches per kid; `gate` can hold fetches."""

    def __init__(self, keys: dict[str, dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches: list[str] = []
        self.gate: asyncio.Event | None = None
        self.down = False

    async def fetch(self, kid: str) -> dict[str, Any]:
        self.fetches.append(kid)
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise RetryableUpstreamError("8x8 fetch_jwk: HTTP 503", status=503)
        if kid not in self.keys:
            raise NotFound("8x8 fetch_jwk: HTTP 404", status=404)
        return self.keys[kid]


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def signed_headers(
    key: rsa.RSAPrivateKey, body: bytes = BODY, *, kid: str = KID, tt: int = NOW_MS
) -> dict[str, str]:
    values = SignedHeaders("cust-1", "evt-1", 0, "tenant-1", tt)
    headers = values.as_headers()
    headers[HEADER_SIGNATURE] = sign(key, kid, detached_payload(body, values))
    return headers


@pytest.fixture
def server(rsa_key: rsa.RSAPrivateKey) -> KeyServer:
    return KeyServer({KID: public_jwk(rsa_key.public_key(), KID)})


@pytest.fixture
def monotonic() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
def verifier(server: KeyServer, monotonic: FakeMonotonic) -> WebhookVerifier:
    return WebhookVerifier(server.fetch, max_skew_s=300, clock=lambda: NOW_S, monotonic=monotonic)


def jws_with_header(header: dict[str, Any], signature: bytes = b"\x01" * 256) -> str:
    return f"{b64url(json.dumps(header).encode())}..{b64url(signature)}"


# --- valid events ---


async def test_valid_signature_returns_the_signed_values(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    signed = await verifier.verify(BODY, signed_headers(rsa_key))
    assert signed == SignedHeaders("cust-1", "evt-1", 0, "tenant-1", NOW_MS)


async def test_header_names_are_case_insensitive(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    headers = {name.upper(): value for name, value in signed_headers(rsa_key).items()}
    mixed = {name.replace("X-8X8", "X-8x8"): value for name, value in headers.items()}
    assert (await verifier.verify(BODY, headers)).event_id == "evt-1"
    assert (await verifier.verify(BODY, mixed)).event_id == "evt-1"


async def test_key_is_fetched_once_and_cached(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    for _ in range(3):
        await verifier.verify(BODY, signed_headers(rsa_key))
    assert server.fetches == [KID]


async def test_rotated_key_is_fetched_on_demand(
    verifier: WebhookVerifier,
    server: KeyServer,
    monotonic: FakeMonotonic,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    await verifier.verify(BODY, signed_headers(rsa_key))
    monotonic.now += 1.0  # a rotation comes later than the first lookup's rate-limit slot
    server.keys["key-b"] = public_jwk(other_rsa_key.public_key(), "key-b")
    await verifier.verify(BODY, signed_headers(other_rsa_key, kid="key-b"))
    await verifier.verify(BODY, signed_headers(rsa_key))  # the old key still works
    assert server.fetches == [KID, "key-b"]


async def test_times_at_the_edge_of_the_skew_are_accepted(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    await verifier.verify(BODY, signed_headers(rsa_key, tt=NOW_MS - 300_000))
    await verifier.verify(BODY, signed_headers(rsa_key, tt=NOW_MS + 300_000))


# --- tampering ---


async def test_tampered_body_is_rejected(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    headers = signed_headers(rsa_key)
    with pytest.raises(SignatureError, match="does not verify"):
        await verifier.verify(BODY.replace(b"hi", b"ho"), headers)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (HEADER_CUSTOMER, "cust-2"),
        (HEADER_EVENT, "evt-2"),
        (HEADER_RETRY, "1"),
        (HEADER_TENANT, "tenant-2"),
        (HEADER_TIME, str(NOW_MS + 1)),
    ],
)
async def test_tampered_signed_header_is_rejected(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey, header: str, value: str
) -> None:
    headers = signed_headers(rsa_key)
    assert headers[header] != value
    headers[header] = value
    with pytest.raises(SignatureError, match="does not verify"):
        await verifier.verify(BODY, headers)


async def test_signature_by_another_key_under_a_known_kid_is_rejected(
    verifier: WebhookVerifier, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        await verifier.verify(BODY, signed_headers(other_rsa_key))


# --- unknown keys and key fetch failures ---


async def test_unknown_kid_is_fetched_once_then_negatively_cached(
    verifier: WebhookVerifier,
    server: KeyServer,
    monotonic: FakeMonotonic,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    headers = signed_headers(other_rsa_key, kid="forged")
    for _ in range(5):
        with pytest.raises(SignatureError, match="unknown signing key") as caught:
            await verifier.verify(BODY, headers)
        assert not isinstance(caught.value, KeyFetchUnavailable)
    assert server.fetches == ["forged"]
    monotonic.now += UNKNOWN_KID_TTL_S + 1
    with pytest.raises(SignatureError):
        await verifier.verify(BODY, headers)
    assert server.fetches == ["forged", "forged"]


async def test_kid_unknown_until_8x8_publishes_it(
    verifier: WebhookVerifier,
    server: KeyServer,
    monotonic: FakeMonotonic,
    other_rsa_key: rsa.RSAPrivateKey,
) -> None:
    headers = signed_headers(other_rsa_key, kid="new")
    with pytest.raises(SignatureError):
        await verifier.verify(BODY, headers)
    server.keys["new"] = public_jwk(other_rsa_key.public_key(), "new")
    monotonic.now += UNKNOWN_KID_TTL_S + 1
    assert (await verifier.verify(BODY, headers)).event_id == "evt-1"


async def test_concurrent_misses_for_one_kid_share_one_fetch(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    server.gate = asyncio.Event()
    tasks = [asyncio.create_task(verifier.verify(BODY, signed_headers(rsa_key))) for _ in range(5)]
    await asyncio.sleep(0.01)
    server.gate.set()
    results = await asyncio.gather(*tasks)
    assert len(results) == 5
    assert server.fetches == [KID]


async def test_concurrent_misses_for_an_unknown_kid_share_one_fetch(
    verifier: WebhookVerifier, server: KeyServer, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    server.gate = asyncio.Event()
    headers = signed_headers(other_rsa_key, kid="forged")
    tasks = [asyncio.create_task(verifier.verify(BODY, headers)) for _ in range(5)]
    await asyncio.sleep(0.01)
    server.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, SignatureError) for r in results)
    assert server.fetches == ["forged"]


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    server.gate = asyncio.Event()
    first = asyncio.create_task(verifier.verify(BODY, signed_headers(rsa_key)))
    second = asyncio.create_task(verifier.verify(BODY, signed_headers(rsa_key)))
    await asyncio.sleep(0.01)
    first.cancel()
    server.gate.set()
    assert (await second).event_id == "evt-1"
    assert server.fetches == [KID]


async def test_key_fetch_outage_is_a_distinct_error_cached_briefly(
    verifier: WebhookVerifier,
    server: KeyServer,
    monotonic: FakeMonotonic,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    server.down = True
    with pytest.raises(KeyFetchUnavailable):
        await verifier.verify(BODY, signed_headers(rsa_key))
    monotonic.now += 1.0  # the rate limit has a token again: only the failure cache holds back
    for _ in range(3):
        with pytest.raises(KeyFetchUnavailable):
            await verifier.verify(BODY, signed_headers(rsa_key))
    assert server.fetches == [KID]
    server.down = False
    monotonic.now += FAILED_FETCH_TTL_S + 1
    assert (await verifier.verify(BODY, signed_headers(rsa_key))).event_id == "evt-1"
    assert server.fetches == [KID, KID]


async def test_a_flood_of_distinct_forged_kids_costs_one_fetch_per_second(
    verifier: WebhookVerifier,
    server: KeyServer,
    monotonic: FakeMonotonic,
    other_rsa_key: rsa.RSAPrivateKey,
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    assert (await verifier.verify(BODY, signed_headers(rsa_key))).event_id == "evt-1"
    outcomes: list[str] = []
    for second in range(3):
        for n in range(500):
            headers = signed_headers(other_rsa_key, kid=f"forged-{second}-{n}")
            with pytest.raises(SignatureError) as caught:
                await verifier.verify(BODY, headers)
            outcomes.append(type(caught.value).__name__)
        monotonic.now += 1.0
    # The real key took the one token; then one lookup per second.
    assert len(server.fetches) == 1 + 0 + 1 + 1
    assert outcomes.count("SignatureError") == 2  # looked up: 8x8 does not know them
    assert outcomes.count("KeyFetchUnavailable") == 1498  # refused without asking 8x8: 503
    # The known key needs no fetch, flood or not.
    assert (await verifier.verify(BODY, signed_headers(rsa_key))).event_id == "evt-1"


@pytest.mark.parametrize(
    "name",
    [HEADER_CUSTOMER, HEADER_EVENT, HEADER_RETRY, HEADER_SIGNATURE, HEADER_TENANT, HEADER_TIME],
)
async def test_a_repeated_signed_header_is_rejected_whichever_comes_first(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey, name: str
) -> None:
    good = signed_headers(rsa_key)
    for extra_first in (True, False):
        headers = CIMultiDict(good)
        if extra_first:
            headers = CIMultiDict([(name.upper(), "other"), *good.items()])
        else:
            headers.add(name, "other")
        with pytest.raises(SignatureError, match="repeated"):
            await verifier.verify(BODY, headers)
    assert server.fetches == []


async def test_another_tenants_event_is_rejected_when_the_tenant_is_set(
    server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    ours = WebhookVerifier(server.fetch, max_skew_s=300, clock=lambda: NOW_S, tenant_id="tenant-2")
    with pytest.raises(SignatureError, match="tenant"):
        await ours.verify(BODY, signed_headers(rsa_key))  # signed for tenant-1
    assert server.fetches == []  # refused before any fetch
    theirs = WebhookVerifier(
        server.fetch, max_skew_s=300, clock=lambda: NOW_S, tenant_id="tenant-1"
    )
    assert (await theirs.verify(BODY, signed_headers(rsa_key))).tenant_id == "tenant-1"


async def test_a_header_that_is_not_utf8_is_rejected_not_an_error(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    headers = signed_headers(rsa_key)
    headers[HEADER_EVENT] = "evt-\udcff"  # how aiohttp hands over a header byte 0xff
    with pytest.raises(SignatureError, match="UTF-8"):
        await verifier.verify(BODY, headers)


async def test_jwk_served_for_another_kid_is_rejected(
    server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    server.keys["asked"] = public_jwk(rsa_key.public_key(), "other")
    verifier = WebhookVerifier(server.fetch, max_skew_s=300, clock=lambda: NOW_S)
    with pytest.raises(SignatureError, match="another kid"):
        await verifier.verify(BODY, signed_headers(rsa_key, kid="asked"))


async def test_overlong_kid_is_rejected_without_a_fetch(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(SignatureError, match="too long"):
        await verifier.verify(BODY, signed_headers(rsa_key, kid="k" * 1000))
    assert server.fetches == []


# --- time ---


@pytest.mark.parametrize("offset_ms", [-300_001, 300_001, -86_400_000, 86_400_000])
async def test_stale_or_future_transmission_time_is_rejected(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey, offset_ms: int
) -> None:
    with pytest.raises(SignatureError, match="skew"):
        await verifier.verify(BODY, signed_headers(rsa_key, tt=NOW_MS + offset_ms))
    assert server.fetches == []  # a replay costs no request to 8x8


# --- malformed events ---


@pytest.mark.parametrize(
    "missing",
    [HEADER_SIGNATURE, HEADER_CUSTOMER, HEADER_EVENT, HEADER_RETRY, HEADER_TENANT, HEADER_TIME],
)
async def test_each_missing_header_is_rejected(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey, missing: str
) -> None:
    headers = signed_headers(rsa_key)
    del headers[missing]
    with pytest.raises(SignatureError, match="missing header"):
        await verifier.verify(BODY, headers)
    headers[missing] = ""
    with pytest.raises(SignatureError, match="missing header"):
        await verifier.verify(BODY, headers)


@pytest.mark.parametrize("header", [HEADER_RETRY, HEADER_TIME])
async def test_non_integer_numeric_header_is_rejected(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey, header: str
) -> None:
    headers = signed_headers(rsa_key)
    for odd in ("soon", "1_0", " 1", "\u0661", "\u00b2", "1\n", "-1", "9" * 19, "9" * 5000):
        headers[header] = odd
        with pytest.raises(SignatureError, match="integers"):
            await verifier.verify(BODY, headers)


@pytest.mark.parametrize("alg", ["HS256", "none", "RS512", "PS256", None])
async def test_algorithms_other_than_rs256_are_rejected(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey, alg: str | None
) -> None:
    headers = signed_headers(rsa_key)
    header: dict[str, Any] = {"b64": False, "crit": ["b64"], "kid": KID}
    if alg is not None:
        header["alg"] = alg
    headers[HEADER_SIGNATURE] = jws_with_header(header)
    with pytest.raises(SignatureError, match="RS256"):
        await verifier.verify(BODY, headers)
    assert server.fetches == []


@pytest.mark.parametrize(
    "header",
    [
        {"b64": True, "crit": ["b64"], "kid": KID, "alg": "RS256"},
        {"crit": ["b64"], "kid": KID, "alg": "RS256"},
        {"b64": False, "kid": KID, "alg": "RS256"},
        {"b64": "false", "crit": ["b64"], "kid": KID, "alg": "RS256"},
    ],
)
async def test_encoded_payload_jws_is_rejected(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey, header: dict[str, Any]
) -> None:
    headers = signed_headers(rsa_key)
    headers[HEADER_SIGNATURE] = jws_with_header(header)
    with pytest.raises(SignatureError, match="b64"):
        await verifier.verify(BODY, headers)


@pytest.mark.parametrize(
    "jws",
    [
        "garbage",
        "a.b",
        "a.b.c",  # not detached: the middle part must be empty
        "a..b..c",
        "!!!..AAAA",
        f"{b64url(b'not json')}..AAAA",
        f"{b64url(b'[1, 2]')}..AAAA",
        jws_with_header({"b64": False, "crit": ["b64"], "alg": "RS256"}),  # no kid
        jws_with_header({"b64": False, "crit": ["b64"], "kid": "", "alg": "RS256"}),
        jws_with_header({"b64": False, "crit": ["b64"], "kid": 7, "alg": "RS256"}),
    ],
)
async def test_malformed_jws_is_rejected(
    verifier: WebhookVerifier, server: KeyServer, rsa_key: rsa.RSAPrivateKey, jws: str
) -> None:
    headers = signed_headers(rsa_key)
    headers[HEADER_SIGNATURE] = jws
    with pytest.raises(SignatureError):
        await verifier.verify(BODY, headers)
    assert server.fetches == []


async def test_truncated_signature_does_not_verify(
    verifier: WebhookVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    headers = signed_headers(rsa_key)
    headers[HEADER_SIGNATURE] = headers[HEADER_SIGNATURE][:-10]
    with pytest.raises(SignatureError):
        await verifier.verify(BODY, headers)


# --- the documented example as a test vector ---


def test_example_checksum_is_the_documented_one() -> None:
    assert checksum(EXAMPLE_BODY) == 1564621066


def test_example_detached_payload_bytes() -> None:
    signed = SignedHeaders.from_headers(EXAMPLE_HEADERS)
    assert detached_payload(EXAMPLE_BODY, signed) == (
        b'{"checksum":1564621066,"cid":"vccC8ProdChecksUS","eid":"g4nqGuj8TpCa6tiZ3DeeNw",'
        b'"retry":0,"tid":"vccC8ProdChecksUS","tt":1629804577296}'
    )


def test_integer_headers_take_one_to_eighteen_ascii_digits() -> None:
    values = {HEADER_CUSTOMER: "c", HEADER_EVENT: "e", HEADER_TENANT: "t"}
    signed = SignedHeaders.from_headers({**values, HEADER_RETRY: "0", HEADER_TIME: "9" * 18})
    assert (signed.retry, signed.transmission_time_ms) == (0, 10**18 - 1)


_texts = st.text(st.characters(blacklist_categories=("Cs",)))  # headers that passed the check


@given(cid=_texts, eid=_texts, tid=_texts, retry=st.integers(0, 10**18), tt=st.integers(0, 10**18))
def test_detached_payload_is_what_json_dumps_writes(
    cid: str, eid: str, tid: str, retry: int, tt: int
) -> None:
    body = json.dumps({"eventType": eid}).encode()
    payload = {"checksum": checksum(body), "cid": cid, "eid": eid, "retry": retry, "tid": tid,
               "tt": tt}  # fmt: skip
    reference = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert detached_payload(body, SignedHeaders(cid, eid, retry, tid, tt)) == reference


@given(st.text("ABCabc019-_+/=. \n\u00e9") | st.binary().map(b64url))
def test_b64url_decode_is_urlsafe_b64decode(text: str) -> None:
    try:
        expected: bytes | None = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        expected = None
    try:
        assert b64url_decode(text) == expected
    except SignatureError:
        assert expected is None


def test_example_protected_header() -> None:
    jws = parse_jws(EXAMPLE_SIGNATURE)
    assert (
        b64url_decode(jws.header_b64) == b'{"b64":false,"crit":["b64"],"kid":"key1","alg":"RS256"}'
    )
    assert jws.kid == "key1"
    assert len(jws.signature) == 256  # RSA-2048


def test_our_signer_reproduces_the_example_header(rsa_key: rsa.RSAPrivateKey) -> None:
    ours = sign(rsa_key, "key1", b"payload")
    assert ours.split(".")[0] == EXAMPLE_SIGNATURE.split(".")[0]


def test_example_signature_does_not_verify_with_the_spec_jwk() -> None:
    # The spec's JWK belongs to another key (spec §3.9), so this must fail; it shows the
    # check really runs on the example bytes rather than passing anything through.
    signed = SignedHeaders.from_headers(EXAMPLE_HEADERS)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_jws(
            jwk_to_public_key(SPEC_JWK),
            parse_jws(EXAMPLE_SIGNATURE),
            detached_payload(EXAMPLE_BODY, signed),
        )


async def test_verifier_runs_the_example_to_the_signature_check() -> None:
    unlabelled = {k: v for k, v in SPEC_JWK.items() if k != "kid"}
    fetched: list[str] = []

    async def fetch(kid: str) -> dict[str, Any]:
        fetched.append(kid)
        return unlabelled

    verifier = WebhookVerifier(fetch, max_skew_s=300, clock=lambda: 1629804577.0)
    with pytest.raises(SignatureError, match="does not verify"):
        await verifier.verify(EXAMPLE_BODY, EXAMPLE_HEADERS)
    assert fetched == ["key1"]
