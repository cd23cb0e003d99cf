"""The handoff's training data: human_handoff examples and the rules, in data/handoff.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedSeq

from bridge.onboard import resources
from bridge.onboard.errors import ProjectError
from bridge.onboard.plan import Plan
from bridge.onboard.yamlfile import YamlFile, append, load_plain

DATA_FILE = "handoff.yml"
ESCALATION_INTENT = "human_handoff"


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())


def _rule_key(rule: Any) -> tuple[str, ...]:
    """A rule by what it does: its intent and action steps (names are the user's to choose)."""
    steps = rule.get("steps") if isinstance(rule, dict) else None
    return tuple(
        f"{kind}:{step[kind]}"
        for step in steps or []
        if isinstance(step, dict)
        for kind in ("intent", "action")
        if kind in step
    )


def _existing(plan: Plan, folder: Path) -> tuple[bool, set[tuple[str, ...]], set[str]]:
    """Whether human_handoff has examples; the bot's rules; what its rules answer each intent
    that starts a rule with."""
    has_examples, rules, first_intents = False, set(), set()
    for path in _data_files(folder):
        data = load_plain(path, plan.rel(path))
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ProjectError(f"{plan.rel(path)} is not a Rasa training data file")
        for item in data.get("nlu") or []:
            if isinstance(item, dict) and item.get("intent") == ESCALATION_INTENT:
                has_examples = has_examples or bool(item.get("examples"))
        for rule in data.get("rules") or []:
            key = _rule_key(rule)
            rules.add(key)
            if key and key[0].startswith("intent:"):
                first_intents.add(key[0])
    return has_examples, rules, first_intents


def merge_data(plan: Plan) -> None:
    folder = plan.root / "data"
    if folder.exists() and not folder.is_dir():
        raise ProjectError("data is a file, not the training data folder")
    has_examples, rules, first_intents = (
        _existing(plan, folder) if folder.is_dir() else (False, set(), set())
    )
    target = YamlFile.load(folder / DATA_FILE, f"data/{DATA_FILE}")
    if target.commented_only and not target.original.strip():
        target = YamlFile.parse(target.path, _header(), f"data/{DATA_FILE}")
    added: list[str] = []
    if not has_examples:
        nlu = YamlFile.parse(Path("nlu.yml"), resources.text("nlu.yml"), "fragment").data["nlu"]
        _section(target, "nlu").extend(nlu)
        added.append(f"NLU examples for {ESCALATION_INTENT}")
    missing = _missing_rules(plan, rules, first_intents)
    if missing:
        append(_section(target, "rules"), missing)
        added.append(f"rules: {'; '.join(str(r['rule']) for r in missing)}")
    if added:
        plan.stage(target)
        plan.change(target.path, "add " + "; ".join(added))


def _section(doc: YamlFile, key: str) -> CommentedSeq:
    if key not in doc.data:
        append(doc.data, {key: CommentedSeq()}, blank=True)
    section: CommentedSeq = doc.data[key]
    return section


def _header() -> str:
    return (
        "# Added by handoff-bridge add-to-bot: how users ask for a person, and the handoff's\n"
        "# rules. end_handoff has no examples on purpose: a live agent chat ends only on an\n"
        '# explicit /end_handoff (typed or a button payload), so "stop" or "close my\n'
        "# account\" reach the agent. Add your users' own phrasings of human_handoff.\n"
        'version: "3.1"\n'
    )


def _missing_rules(plan: Plan, rules: set[tuple[str, ...]], first_intents: set[str]) -> list[Any]:
    fragment = YamlFile.parse(Path("rules.yml"), resources.text("rules.yml"), "fragment")
    missing = []
    for rule in fragment.data["rules"]:
        key = _rule_key(rule)
        if key in rules:
            continue
        if key[0] in first_intents:
            # The bot answers this intent its own way already; two rules would contradict.
            plan.notes.append(
                f"kept the bot's own rule for {key[0].split(':')[1]}; the handoff's rule "
                f"'{rule['rule']}' was not added"
            )
            continue
        missing.append(rule)
    return missing
