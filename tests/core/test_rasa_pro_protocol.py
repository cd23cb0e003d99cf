"""Rasa Pro's action protocol: `domain_digest`, the 449 retry, selective domain (issue 8 item 5,
issue 9 item 6).

No Rasa Pro server can run here (it needs a licence), so these are PROTOCOL-LEVEL tests: the
request shapes are derived from Rasa Pro's published source, not recorded from a server.
- rasa/core/actions/custom_action_executor.py, `CustomActionRequestWriter.create`: the call is
  {next_action, sender_id, tracker, version} + `domain` only when `include_domain` (and, with
  `selective_domain` on, only for actions listed as needing it) + always `domain_digest`
  (`domain.fingerprint()`).
- `RetryCustomActionExecutor.run`: the first call goes without the domain; on a 449 answer
  (`ActionResultType.RETRY_WITH_DOMAIN`) it is sent again with the domain; a second 449 is
  `DomainNotFound`.
The answers expected are rasa-sdk's own server's (rasa_sdk/endpoint.py maps
`ActionMissingDomainException` to 449; rasa_sdk/executor.py `update_and_return_domain` keeps
the last domain and digest sent).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.core.conftest import BridgeFactory
from tests.core.test_routes import _action_call

DIGEST = "f3c2a1b0d9e8"  # Domain.fingerprint() is an opaque hex digest to the action server


def pro_call(
    action: str, sender: str, *, include_domain: bool, digest: str = DIGEST
) -> dict[str, Any]:
    """A call shaped as CustomActionRequestWriter.create writes it (Rasa Pro 3.9+)."""
    call = _action_call(action, sender)
    domain = call.pop("domain")
    call["version"] = "3.10.0"
    if include_domain:
        call["domain"] = domain | {"version": "3.1", "actions": [action]}
    call["domain_digest"] = digest
    return call


async def _post(http: aiohttp.ClientSession, url: str, call: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(f"{url}/webhook", json=call) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("api", ["gateway"])
async def test_first_call_without_domain_is_449_then_the_retry_runs(
    make_bridge: BridgeFactory,
) -> None:
    h = await make_bridge()
    async with aiohttp.ClientSession() as http:
        # RetryCustomActionExecutor: first without the domain...
        status, body = await _post(
            http, h.url, pro_call("action_handoff_notice", "pro-1", include_domain=False)
        )
        assert status == 449
        assert body["action_name"] == "action_handoff_notice" and "domain" in body["error"]
        # ... then with it.
        status, _ = await _post(
            http, h.url, pro_call("action_handoff_notice", "pro-1", include_domain=True)
        )
        assert status == 200
        # Once the digest is known, calls without the domain run (the domain is cached).
        status, _ = await _post(
            http, h.url, pro_call("action_handoff_notice", "pro-2", include_domain=False)
        )
        assert status == 200
        # A changed domain (a new model) has a new digest: 449 again, until it is sent.
        status, _ = await _post(
            http, h.url, pro_call("action_handoff_notice", "pro-2", include_domain=False,
                                  digest="0a1b2c3d")
        )  # fmt: skip
        assert status == 449


@pytest.mark.parametrize("api", ["gateway"])
async def test_selective_domain_calls_without_domain_run_once_the_digest_is_known(
    make_bridge: BridgeFactory,
) -> None:
    """With `selective_domain: true`, Rasa Pro sends the domain only for actions that declare
    they need it (`send_domain` in the domain's actions); the others never carry it, even on
    the retry. rasa-sdk serves them from the domain of an earlier call with the same digest."""
    h = await make_bridge()
    async with aiohttp.ClientSession() as http:
        needs_domain = pro_call("action_handoff_notice", "sel-1", include_domain=True)
        assert (await _post(http, h.url, needs_domain))[0] == 200
        no_domain = pro_call("action_handoff_end", "sel-2", include_domain=False)
        assert (await _post(http, h.url, no_domain))[0] == 200


@pytest.mark.parametrize("api", ["gateway"])
async def test_rasa_3_6_calls_carry_the_domain_and_no_digest(make_bridge: BridgeFactory) -> None:
    # Rasa 3.6 (rasa/core/actions/action.py RemoteAction._action_call_format) always sends
    # the domain and knows nothing of digests: nothing changes for it.
    h = await make_bridge()
    async with aiohttp.ClientSession() as http:
        assert (await _post(http, h.url, _action_call("action_handoff_notice", "os-1")))[0] == 200
        call = _action_call("action_handoff_notice", "os-2")
        del call["domain"]
        # No digest and no domain: rasa-sdk treats it as a missing domain too.
        assert (await _post(http, h.url, call))[0] == 449
