"""HandoffPolicy in config.yml, keeping the bot's own policies (and Rasa's defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from bridge.onboard import resources
from bridge.onboard.errors import ProjectError
from bridge.onboard.plan import Plan
from bridge.onboard.yamlfile import YamlFile, append

RULE_POLICY_PRIORITY = 4  # rasa.core.constants.RULE_POLICY_PRIORITY (3.6)
HANDOFF_SUFFIX = "HandoffPolicy"


def _fragment() -> CommentedMap:
    return YamlFile.parse(Path("policies.yml"), resources.text("policies.yml"), "fragment").data


def _named(policies: list[Any], suffix: str) -> dict[str, Any] | None:
    return next((p for p in policies if str(p.get("name", "")).endswith(suffix)), None)


def merge_config(plan: Plan) -> None:
    path = plan.root / "config.yml"
    if not path.is_file():
        raise ProjectError("no config.yml: is this a Rasa 3.x project?")
    doc = YamlFile.load(path, "config.yml")
    policies = doc.data.get("policies")
    fragment = _fragment()
    if not policies:
        _write_defaults(plan, doc, fragment)
    elif not isinstance(policies, CommentedSeq) or not all(isinstance(p, dict) for p in policies):
        raise ProjectError("config.yml: `policies` is not a list of {name: ...} entries")
    else:
        _complete(plan, doc, policies, fragment)
    _note_fallback(plan, doc)
    plan.stage(doc)


def _write_defaults(plan: Plan, doc: YamlFile, fragment: CommentedMap) -> None:
    # With no policies listed Rasa trains its defaults; naming one would drop them all.
    policies = CommentedSeq([*fragment["default"], *fragment["handoff"]])
    doc.data["policies"] = policies
    names = ", ".join(str(p["name"]) for p in fragment["default"])
    plan.change(
        doc.path,
        f"policies: write out Rasa 3.6's default policies ({names}), which Rasa uses while "
        f"none are listed, and add {fragment['handoff'][0]['name']}",
    )


def _complete(plan: Plan, doc: YamlFile, policies: CommentedSeq, fragment: CommentedMap) -> None:
    handoff = _named(policies, HANDOFF_SUFFIX)
    if handoff is None:
        append(policies, [fragment["handoff"][0]])
        plan.change(doc.path, f"policies: add {fragment['handoff'][0]['name']}")
    else:
        rule = _named(policies, "RulePolicy")
        floor = int((rule or {}).get("priority", RULE_POLICY_PRIORITY))
        if int(handoff.get("priority", 7)) <= floor:
            handoff["priority"] = max(7, floor + 1)
            plan.change(
                doc.path,
                f"policies: raise HandoffPolicy's priority to {handoff['priority']} "
                f"(it must outrank RulePolicy's {floor})",
            )
    if _named(policies, "RulePolicy") is None:
        policies.insert(0, CommentedMap(name="RulePolicy"))
        plan.change(doc.path, "policies: add RulePolicy (the handoff's rules need it)")


def _note_fallback(plan: Plan, doc: YamlFile) -> None:
    pipeline = doc.data.get("pipeline")
    if pipeline and not any(
        isinstance(c, dict) and c.get("name") == "FallbackClassifier" for c in pipeline
    ):
        plan.notes.append(
            "config.yml: the pipeline has no FallbackClassifier, so the bot never predicts "
            "nlu_fallback and escalates only when asked (add one to escalate after "
            "HANDOFF_FALLBACKS unsure turns)"
        )
