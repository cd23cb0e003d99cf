"""Escalations are counted by trigger (asked, fallbacks, rule) and kind (new, reopened)."""

from __future__ import annotations

from rasa_sdk import Tracker

from tests.actions.conftest import World, tracker, turn
from tests.actions.test_actions import END, ESCALATE, active, configured, run


def escalations(world: World, trigger: str, kind: str) -> float:
    value = world.service.metrics.registry.get_sample_value(
        "handoff_escalations_total", {"trigger": trigger, "kind": kind}
    )
    return value or 0.0


def vip(t: Tracker) -> bool:
    return t.get_slot("tier") == "vip"


async def test_escalations_by_trigger_and_kind(w: World) -> None:
    world = w
    await run(ESCALATE, tracker("ann", "a human please", "human_handoff"))
    assert escalations(world, "asked", "new") == 1
    history = turn("asdf", "nlu_fallback", "action_handoff_to_agent")
    await run(ESCALATE, tracker("bob", "qwerty", "nlu_fallback", history=history))
    assert escalations(world, "fallbacks", "new") == 1
    rule = f"{__name__}.vip"
    with configured(world, {"handoff_rule": rule}):
        await run(ESCALATE, tracker("cat", "hmm", "nlu_fallback", slots={"tier": "vip"}))
    assert escalations(world, "rule", "new") == 1
    await run(END, active(tracker("ann", "/end_handoff", "end_handoff")))
    await run(ESCALATE, tracker("ann", "again", "human_handoff"))
    assert escalations(world, "asked", "reopened") == 1
    assert escalations(world, "asked", "new") == 1  # the reopen is not counted as new
