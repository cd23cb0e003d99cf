"""`handoff-bridge add-to-bot`: add the handoff to a Rasa 3.x project, in place.

Everything is planned first (files parsed, merges computed); a project that cannot be
understood raises ProjectError before anything is written. The YAML is edited round-trip
(ruamel.yaml), so the bot's comments, quoting and key order stay.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bridge.onboard.channels import DEFAULT_CALLBACK_URL, merge_credentials
from bridge.onboard.config import merge_config
from bridge.onboard.data import merge_data
from bridge.onboard.domain import merge_domain
from bridge.onboard.endpoints import merge_endpoints
from bridge.onboard.errors import ProjectError
from bridge.onboard.module import place_policy_module
from bridge.onboard.plan import Plan

__all__ = ["Options", "Plan", "ProjectError", "apply", "plan"]

HANDOFF_ACTIONS = {
    "action_handoff_to_agent", "action_handoff_forward", "action_handoff_end",
    "action_handoff_notice", "action_restart",
}  # fmt: skip


@dataclass(frozen=True)
class Options:
    bridge_url: str = "http://localhost:5055/webhook"
    channel: str | None = None  # socketio | callback: add it when no channel takes pushes
    callback_url: str = DEFAULT_CALLBACK_URL


def plan(root: Path, options: Options = Options()) -> Plan:
    """What add-to-bot would change in the project at `root` (nothing is written)."""
    root = root.resolve()
    if not root.is_dir():
        raise ProjectError(f"{root} is not a directory")
    result = Plan(root)
    merge_config(result)
    actions = merge_domain(result)
    merge_data(result)
    own = sorted(a for a in actions - HANDOFF_ACTIONS if not a.startswith("utter_"))
    merge_endpoints(result, options.bridge_url, own)
    merge_credentials(result, options.channel, options.callback_url)
    place_policy_module(result)
    return result


def apply(planned: Plan) -> None:
    """Write the planned files (each replaced whole, so none is left half-written)."""
    for path, text in planned.writes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.add-to-bot")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
