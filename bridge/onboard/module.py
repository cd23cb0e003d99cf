"""handoff_policy.py where Rasa imports it from: the project directory."""

from __future__ import annotations

from bridge.onboard import resources
from bridge.onboard.errors import ProjectError
from bridge.onboard.plan import Plan

MODULE = "handoff_policy.py"


def place_policy_module(plan: Plan) -> None:
    path = plan.root / MODULE
    wanted = resources.text(MODULE)
    if path.exists():
        current = path.read_text(encoding="utf-8")
        if current == wanted:
            return
        if current.splitlines()[:1] != wanted.splitlines()[:1]:
            raise ProjectError(f"{MODULE} exists and is not the bridge's: rename it first")
        plan.change(path, "update it to this version of the bridge's policy")
    else:
        plan.change(
            path,
            "add the policy module (Rasa imports it from the project directory: run rasa from there)",
        )
    plan.writes[path] = wanted
