"""The example bot's domain and rules, as the demo bot needs them.

Read from the repository's own `domain.yml` and `data/rules.yml` (from an installed package
without a checkout: the handoff's domain and rules that add-to-bot ships), so the demo bot says
exactly what the example Rasa bot says (a reworded `utter_handoff_*` shows up in the sandbox)
and follows its one-step rules. Only the parts the example uses are understood: responses
with slot conditions and `{slot}` placeholders, `from_entity` slot mappings, and rules of the
shape "intent X, then action Y".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridge.onboard import resources
from bridge.sandbox.errors import SandboxError

_PLACEHOLDER = re.compile(r"\{([^\n{}]+?)\}")


@dataclass(frozen=True)
class EntitySlot:
    """A `from_entity` mapping: `slot` takes the value of `entity` on these intents."""

    slot: str
    entity: str
    intents: frozenset[str]  # empty: any intent


@dataclass(frozen=True)
class BotDomain:
    raw: dict[str, Any]  # sent as the action call's `domain`, as Rasa does
    intents: frozenset[str]
    responses: dict[str, list[dict[str, Any]]]
    initial_slots: dict[str, Any]
    entity_slots: tuple[EntitySlot, ...]
    rules: dict[str, str]  # intent -> the action its rule runs

    def render(self, name: str, slots: Mapping[str, Any]) -> str | None:
        """The text of response `name` for these slot values, as Rasa's templated NLG picks
        it: a variation whose conditions hold, else one without conditions (the first, where
        Rasa picks at random: the sandbox should be predictable)."""
        variations = self.responses.get(name) or []
        matching = [v for v in variations if v.get("condition") and _holds(v["condition"], slots)]
        plain = [v for v in variations if not v.get("condition")]
        for variation in matching or plain:
            text = variation.get("text")
            if isinstance(text, str):
                return _fill(text, slots)
        return None

    def buttons(self, name: str) -> list[dict[str, str]]:
        """The buttons of response `name` (the example's survey has two), as Rasa sends them."""
        for variation in self.responses.get(name) or []:
            found = variation.get("buttons")
            if isinstance(found, list):
                return [
                    {"title": str(b.get("title")), "payload": str(b.get("payload"))}
                    for b in found
                    if isinstance(b, dict)
                ]
        return []

    def texts_of(self, prefix: str) -> list[str]:
        """Every text variation of the responses whose names start with `prefix`."""
        return [
            str(variation["text"])
            for name, variations in self.responses.items()
            if name.startswith(prefix)
            for variation in variations
            if variation.get("text")
        ]


# Intents every Rasa domain has without declaring them (the demo bot needs `/restart`).
RASA_DEFAULT_INTENTS = frozenset({"restart"})


def example_root() -> Path | None:
    """The repository root holding the example bot (domain.yml, data/): the package's own
    checkout (an editable install from a clone), else the working directory (a clone the
    command is run from); None from an installed package anywhere else."""
    here = Path(__file__).resolve().parents[3]
    for root in (here, Path.cwd()):
        if (root / "domain.yml").is_file() and (root / "data" / "rules.yml").is_file():
            return root
    return None


def load_domain(root: Path | None = None) -> BotDomain:
    """The example bot's domain; without a checkout, the handoff's own domain and rules as
    the package ships them for add-to-bot (the demo bot then knows only the handoff)."""
    root = root or example_root()
    if root is None:
        raw = _parse(resources.text("domain.yml"), "the packaged handoff domain")
        rules = _parse(resources.text("rules.yml"), "the packaged handoff rules")
    else:
        raw = _yaml(root / "domain.yml")
        rules = _yaml(root / "data" / "rules.yml")
    slots = raw.get("slots") or {}
    return BotDomain(
        raw=raw,
        intents=frozenset(_names(raw.get("intents") or [])) | RASA_DEFAULT_INTENTS,
        responses={str(k): list(v or []) for k, v in (raw.get("responses") or {}).items()},
        initial_slots={str(n): (s or {}).get("initial_value") for n, s in slots.items()},
        entity_slots=tuple(_entity_slots(slots)),
        rules=_one_step_rules(rules.get("rules") or []),
    )


def _yaml(path: Path) -> dict[str, Any]:
    return _parse(path.read_text(encoding="utf-8"), str(path))


def _parse(text: str, what: str) -> dict[str, Any]:
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise SandboxError(f"{what} is not a YAML mapping")
    return data


def _names(items: list[Any]) -> list[str]:
    """Domain lists hold plain names or one-key mappings (`- name: {options}`)."""
    return [str(next(iter(i))) if isinstance(i, dict) else str(i) for i in items]


def _entity_slots(slots: Mapping[str, Any]) -> list[EntitySlot]:
    out = []
    for name, slot in slots.items():
        for mapping in (slot or {}).get("mappings") or []:
            if mapping.get("type") == "from_entity" and mapping.get("entity"):
                intents = mapping.get("intent") or []
                intents = [intents] if isinstance(intents, str) else intents
                out.append(EntitySlot(str(name), str(mapping["entity"]), frozenset(intents)))
    return out


def _one_step_rules(rules: list[Any]) -> dict[str, str]:
    table: dict[str, str] = {}
    for rule in rules:
        steps = rule.get("steps") if isinstance(rule, dict) else None
        if not isinstance(steps, list) or len(steps) != 2 or rule.get("condition"):
            continue  # the example has only one-step rules; others would need a real policy
        intent, action = steps[0].get("intent"), steps[1].get("action")
        if isinstance(intent, str) and isinstance(action, str):
            table[intent] = action
    return table


def _holds(conditions: list[Any], slots: Mapping[str, Any]) -> bool:
    return all(
        c.get("type") != "slot" or slots.get(str(c.get("name"))) == c.get("value")
        for c in conditions
        if isinstance(c, dict)
    )


def _fill(text: str, slots: Mapping[str, Any]) -> str:
    # Like Rasa's interpolator: known slots are filled in (None as "None"), unknown
    # placeholders stay as written.
    return _PLACEHOLDER.sub(lambda m: str(slots[m[1]]) if m[1] in slots else m[0], text)
