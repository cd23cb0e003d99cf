"""The actions get their settings and service per call, the way rasa-sdk runs them: no Redis,
no simulator, nothing process-wide."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import ValidationError
from rasa_sdk.executor import ActionExecutor

from bridge import host
from bridge.settings import Settings


def _call(sender: str, action: str, text: str, intent: str) -> dict[str, Any]:
    latest = {"text": text, "intent": {"name": intent, "confidence": 0.2}, "entities": []}
    return {
        "next_action": action, "sender_id": sender, "version": "3.6.21", "domain": {},
        "tracker": {"sender_id": sender, "slots": {"handoff_active": False}, "latest_message": latest,
                    "events": [{"event": "user", "text": text, "parse_data": latest}],
                    "paused": False, "followup_action": None, "active_loop": {},
                    "latest_action_name": "action_listen"},
    }  # fmt: skip


def _executor() -> ActionExecutor:
    executor = ActionExecutor()
    executor.register_package("actions")
    return executor


async def _fallback(executor: ActionExecutor, settings: Settings, sender: str) -> list[str]:
    with host.serving(host.ActionContext(settings)):
        await asyncio.sleep(0)  # the other call's context is current meanwhile
        result = await executor.run(
            _call(sender, "action_handoff_to_agent", "asdfgh", "nlu_fallback")
        )
    assert result is not None
    return [str(r["response"]) for r in result.model_dump()["responses"]]


async def test_concurrent_calls_each_see_the_settings_they_were_handed() -> None:
    """HANDOFF_FALLBACKS=0 never escalates: utter_default. HANDOFF_FALLBACKS=1 escalates at
    once, which needs the service (none in this context: the call says so)."""
    executor = _executor()
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    never = base.model_copy(update={"handoff_fallbacks": 0})
    at_once = base.model_copy(update={"handoff_fallbacks": 1})
    escalating = asyncio.create_task(_fallback(executor, at_once, "a"))
    assert await _fallback(executor, never, "b") == ["utter_default"]
    with pytest.raises(RuntimeError, match="no handoff service"):
        await escalating


async def test_a_fallback_is_answered_from_the_settings_of_the_call() -> None:
    executor = _executor()
    settings = Settings(_env_file=None, handoff_fallbacks=3)  # type: ignore[call-arg]
    with host.serving(host.ActionContext(settings)):
        result = await executor.run(_call("c", "action_handoff_to_agent", "asdfgh", "nlu_fallback"))
    assert result is not None
    assert [r["response"] for r in result.model_dump()["responses"]] == ["utter_default"]


def test_settings_are_frozen() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        settings.handoff_fallbacks = 0


async def test_the_stock_servers_service_needs_no_listener_settings(real_redis_url: str) -> None:
    """The stock rasa-sdk server serves no bridge route: without BRIDGE_ACTION_TOKEN and with
    BRIDGE_HOST left at its public default, its actions still get their service (only `serve`
    refuses such settings)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, eightbyeight_api_key="k", eightbyeight_channel_id="c",
        redis_url=real_redis_url, redis_key_prefix="hb-test-stock:",
    )  # fmt: skip
    assert settings.bridge_host == "0.0.0.0" and not settings.action_tokens
    standalone = host._Standalone(settings)
    service = await standalone.service()
    assert service is await standalone.service()  # one per event loop
    await service.store.close()
