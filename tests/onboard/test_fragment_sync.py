"""The fragment add-to-bot copies into a user's bot (bridge/onboard/files/) has every handoff
name the example bot (domain.yml, data/rules.yml), the bridge's triggers and the actions use,
so that a feature added to the example is never missing from users' bots."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk.executor import ActionExecutor

from bridge import handoff, host, queue_status
from bridge.onboard import resources

ROOT = Path(__file__).resolve().parents[2]
# The example's own follow-up after an agent ended the chat (the guide says how to copy it);
# action_handoff_notice asks it only when the domain has it.
EXAMPLE_ONLY = {"utter_handoff_survey", "utter_handoff_survey_good", "utter_handoff_survey_bad"}
# Said by the actions only when the bot's domain has them (actions.outcomes.has_response).
OPTIONAL_RESPONSES = {"utter_handoff_survey", "utter_restart"}


def _load(text: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


def _names(items: list[Any] | None) -> set[str]:
    return {str(next(iter(i))) if isinstance(i, dict) else str(i) for i in items or []}


def is_handoff_name(section: str, name: str) -> bool:
    match section:
        case "intents":
            return name in ("human_handoff", "end_handoff") or name.startswith("EXTERNAL_")
        case "slots":
            return name.startswith("handoff_")
        case "responses":
            return name.startswith("utter_handoff_") and name not in EXAMPLE_ONLY
        case "actions":
            return name.startswith("action_handoff_") or name == "action_restart"
        case _:  # entities: the example declares only those the triggers carry
            return True


def handoff_names(domain: dict[str, Any]) -> dict[str, set[str]]:
    out = {}
    for section in ("intents", "entities", "actions"):
        out[section] = {n for n in _names(domain.get(section)) if is_handoff_name(section, n)}
    for section in ("slots", "responses"):
        out[section] = {n for n in domain.get(section) or {} if is_handoff_name(section, n)}
    return out


def fragment() -> dict[str, Any]:
    return _load(resources.text("domain.yml"))


def fragment_names() -> dict[str, set[str]]:
    domain = fragment()
    out = {s: _names(domain.get(s)) for s in ("intents", "entities", "actions")}
    out |= {s: set(domain.get(s) or {}) for s in ("slots", "responses")}
    return out


def handoff_rules(rules: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The steps of every rule a handoff intent starts."""
    out = []
    for rule in rules.get("rules") or []:
        steps = rule.get("steps") or []
        first = steps[0].get("intent") if steps else None
        if first is not None and is_handoff_name("intents", first):
            out.append(steps)
    return out


@pytest.mark.parametrize("section", ["intents", "entities", "slots", "responses", "actions"])
def test_every_handoff_name_of_the_example_domain_is_in_the_fragment(section: str) -> None:
    example = handoff_names(_load((ROOT / "domain.yml").read_text()))
    assert example[section] - fragment_names()[section] == set()


def test_the_fragments_slots_are_the_examples() -> None:
    """Mappings included: a trigger whose entity fills a slot in one must in the other."""
    example = _load((ROOT / "domain.yml").read_text())["slots"]
    for name, slot in fragment()["slots"].items():
        assert slot == example[name], name


def test_every_handoff_rule_of_the_example_is_in_the_fragment() -> None:
    example = handoff_rules(_load((ROOT / "data" / "rules.yml").read_text()))
    packaged = handoff_rules(_load(resources.text("rules.yml")))
    assert [steps for steps in example if steps not in packaged] == []
    assert len(example) == len(packaged)


def test_every_trigger_and_entity_the_bridge_sends_is_in_the_fragment_with_a_rule() -> None:
    intents = {v for k, v in vars(handoff).items() if k.startswith("INTENT_")}
    entities = {v for m in (handoff, queue_status) for k, v in vars(m).items() if k.startswith("ENTITY_")}  # fmt: skip
    names = fragment_names()
    assert intents - names["intents"] == set() and entities - names["entities"] == set()
    ruled = {steps[0]["intent"] for steps in handoff_rules(_load(resources.text("rules.yml")))}
    assert intents - ruled == set()


def test_every_action_the_bridge_serves_is_in_the_fragment() -> None:
    host.declare_in_process()  # as serve does: importing the actions needs no REDIS_URL here
    executor = ActionExecutor()
    executor.register_package("actions")
    assert set(executor.actions) - fragment_names()["actions"] == set()


def _constants(trees: list[ast.Module]) -> dict[str, list[str]]:
    """Module-level NAME = "text" (or a tuple of texts) in the actions package."""
    out: dict[str, list[str]] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                value = ast.literal_eval(node.value) if _literal(node.value) else None
                if isinstance(value, str):
                    out[node.targets[0].id] = [value]
                elif isinstance(value, tuple) and all(isinstance(v, str) for v in value):
                    out[node.targets[0].id] = list(value)
    return out


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def set_slots(trees: list[ast.Module]) -> set[str]:
    """The first argument of every SlotSet(...) in the actions, resolved to slot names (a
    constant, or a loop over a tuple of constants); one that cannot be resolved fails."""
    constants = _constants(trees)
    loops: dict[str, list[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.comprehension | ast.For) and isinstance(node.target, ast.Name):
                over = node.iter
                if isinstance(over, ast.Name) and over.id in constants:
                    loops[node.target.id] = constants[over.id]
    out: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "SlotSet"):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.Constant):
                out.add(str(arg.value))
            else:
                name = getattr(arg, "id", None)
                assert name in constants or name in loops, ast.unparse(node)
                out |= set(constants.get(name) or loops[name])
    return out


def action_trees() -> list[ast.Module]:
    return [ast.parse(p.read_text()) for p in sorted((ROOT / "actions").glob("*.py"))]


def test_the_actions_set_only_slots_of_the_fragment() -> None:
    slots = set_slots(action_trees())
    assert "handoff_active" in slots  # the scan finds them
    assert slots - fragment_names()["slots"] == set()


def test_the_actions_say_only_responses_of_the_fragment_or_optional_ones() -> None:
    said = {
        node.value
        for tree in action_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("utter_")
        and node.value.isidentifier()
    }
    assert "utter_handoff_connecting" in said
    assert said - fragment_names()["responses"] - OPTIONAL_RESPONSES == set()
