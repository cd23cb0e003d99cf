"""The signing key: RFC 7638 kid, served without auth at both JWK paths, rotation."""

from __future__ import annotations

import aiohttp

from bridge.eightbyeight.signature import jwk_thumbprint, jwk_to_public_key, parse_jws
from bridge.simulator import Simulator
from tests.simulator.conftest import (
    GW,
    MakeSim,
    Receiver,
    call,
    gw_create,
    settle,
    verify_signature,
)


async def test_the_jwk_is_served_at_both_paths_without_credentials(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    kid = sim.kid
    gateway = await call(http, "GET", f"{sim.base_url}{GW}/jwk/{kid}/public")
    legacy = await call(http, "GET", f"{sim.base_url}/vcc/us/chat/v2/jwk/{kid}/public")
    assert gateway.status == legacy.status == 200
    assert gateway.json == legacy.json
    jwk = gateway.json
    assert set(jwk) == {"kty", "e", "kid", "n"} and (jwk["kty"], jwk["e"]) == ("RSA", "AQAB")
    key = jwk_to_public_key(jwk)
    assert key.key_size == 2048
    assert jwk["kid"] == kid == jwk_thumbprint(key)


async def test_an_unknown_kid_is_the_documented_jwk_404(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    for path in (f"{GW}/jwk/nope/public", "/vcc/eu/chat/v2/jwk/nope/public"):
        answer = await call(http, "GET", sim.base_url + path)
        assert (answer.status, answer.content_type) == (404, "application/problem+json")
        assert answer.json == {
            "type": "ClientError",
            "title": "Resource not found.",
            "status": 404,
            "detail": "Resource may not exist or is not accessible.",
            "resourceType": "JWKPublic",
            "resourceId": "nope",
            "instance": "ResourceNotFound",
        }


async def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_published(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver
) -> None:
    old = sim.kid
    first = await gw_create(http, sim)
    await settle(sim)
    new = sim.rotate_key()
    assert new == sim.kid != old
    await sim.desk.accept(first)
    await settle(sim)
    kids = [parse_jws(r.header("x-8x8-signature")).kid for r in receiver.events()]
    assert kids == [old, old, old, new, new]
    for got in receiver.events():
        await verify_signature(http, sim, got)
    assert (await call(http, "GET", f"{sim.base_url}{GW}/jwk/{old}/public")).status == 200


async def test_every_simulator_has_its_own_key(make_sim: MakeSim) -> None:
    one, two = await make_sim(), await make_sim()
    assert one.kid != two.kid
