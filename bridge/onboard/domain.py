"""Merge the handoff's domain fragment into domain.yml, or into a file of a domain/ folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from bridge.onboard import resources
from bridge.onboard.errors import ProjectError
from bridge.onboard.plan import Plan
from bridge.onboard.yamlfile import YamlFile, append

LISTS = ("intents", "entities", "actions")
MAPS = ("slots", "responses")
FOLDER_FILE = "handoff.yml"  # the file add-to-bot writes in a domain/ folder


def _name(item: Any) -> str:
    """An intent/entity/action list item: `name` or `{name: {...options}}`."""
    if isinstance(item, dict) and len(item) == 1:
        return str(next(iter(item)))
    return str(item)


def _section(doc: YamlFile, key: str, kind: type) -> Any:
    value = doc.data.get(key)
    if value is not None and not isinstance(value, kind):
        what = "list" if kind is list else "mapping"
        raise ProjectError(f"{doc.path.name}: `{key}` is not a {what}")
    return value


def _present(docs: list[YamlFile]) -> dict[str, set[str]]:
    """Every intent, entity, action, slot and response name the bot's domain already has."""
    found: dict[str, set[str]] = {key: set() for key in (*LISTS, *MAPS)}
    for doc in docs:
        for key in LISTS:
            found[key] |= {_name(item) for item in _section(doc, key, list) or []}
        for key in MAPS:
            found[key] |= {str(k) for k in _section(doc, key, dict) or {}}
    return found


def _domain_docs(root: Path) -> tuple[list[YamlFile], YamlFile]:
    """The domain's files, and the one to add to."""
    single = root / "domain.yml"
    if single.is_file():
        doc = YamlFile.load(single, "domain.yml")
        return [doc], doc
    folder = root / "domain"
    if not folder.is_dir():
        raise ProjectError("no domain.yml and no domain/ folder: is this a Rasa 3.x project?")
    paths = sorted(p for p in folder.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    docs = [YamlFile.load(p, str(p.relative_to(root))) for p in paths]
    target = next((d for d in docs if d.path.name == FOLDER_FILE), None)
    if target is None:
        target = YamlFile.parse(folder / FOLDER_FILE, "", f"domain/{FOLDER_FILE}")
        target.commented_only = False
        target.data["version"] = "3.1"
    return docs, target


def _add(target: YamlFile, key: str, missing: list[str], fragment: Any) -> None:
    items: Any = missing if key in LISTS else {name: fragment[name] for name in missing}
    section = target.data.get(key)
    if section is None:
        append(target.data, {key: CommentedSeq() if key in LISTS else CommentedMap()}, blank=True)
        section = target.data[key]
    append(section, items)


def merge_domain(plan: Plan) -> set[str]:
    """Add what the bot's domain lacks; return the actions it had already."""
    docs, target = _domain_docs(plan.root)
    fragment = YamlFile.parse(Path("domain.yml"), resources.text("domain.yml"), "fragment").data
    present = _present(docs)
    added: list[str] = []
    for key in (*LISTS, *MAPS):
        wanted = [_name(i) for i in fragment[key]] if key in LISTS else list(fragment[key])
        missing = [name for name in wanted if name not in present[key]]
        if missing:
            _add(target, key, missing, fragment[key])
            added.append(f"{key} {', '.join(missing)}")
    if added:
        plan.stage(target)
        plan.change(target.path, "add " + "; ".join(added))
    _check_sessions(plan, docs)
    return present["actions"]


def _check_sessions(plan: Plan, docs: list[YamlFile]) -> None:
    for doc in docs:
        session = doc.data.get("session_config")
        if isinstance(session, dict) and session.get("carry_over_slots_to_new_session") is False:
            plan.problems.append(
                f"{plan.rel(doc.path)}: session_config.carry_over_slots_to_new_session is false: "
                "a handoff that outlives a session would lose handoff_active and the bot would "
                "answer while the agent is still there (set it to true)"
            )
