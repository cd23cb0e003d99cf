"""docs/add-handoff-to-your-bot.md: its manual fragments are the package's own, they parse, and
merged by hand into a `rasa init`-shaped bot they leave add-to-bot nothing to do."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bridge.onboard import plan, resources
from tests.onboard.projects import AUTO_CONFIG, write

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "add-handoff-to-your-bot.md"
_BLOCK = re.compile(r"<!-- manual: (\S+) -->\n.*?```yaml\n(.*?)```", re.S)


def manual_blocks() -> dict[str, str]:
    return dict(_BLOCK.findall(GUIDE.read_text()))


def test_every_manual_fragment_parses_and_is_the_packaged_one() -> None:
    blocks = manual_blocks()
    assert set(blocks) == {"domain.yml", "nlu.yml", "rules.yml", "config.yml", "endpoints.yml",
                           "credentials.yml"}  # fmt: skip
    for name in ("domain.yml", "nlu.yml", "rules.yml"):
        assert blocks[name] == resources.text(name), name
    policies = yaml.safe_load(resources.text("policies.yml"))
    assert yaml.safe_load(blocks["config.yml"])["policies"] == [
        *policies["default"],
        *policies["handoff"],
    ]
    for text in blocks.values():
        assert isinstance(yaml.safe_load(text), dict)


def _merge(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """What a user pasting the fragment does: add each entry to the matching section."""
    for key, value in theirs.items():
        if isinstance(value, list):
            mine[key] = [*(mine.get(key) or []), *value]
        elif isinstance(value, dict):
            mine[key] = {**(mine.get(key) or {}), **value}
        else:
            mine.setdefault(key, value)
    return mine


def test_the_manual_steps_leave_add_to_bot_nothing_to_do(tmp_path: Path) -> None:
    root = write(tmp_path, AUTO_CONFIG)
    blocks = {name: yaml.safe_load(text) for name, text in manual_blocks().items()}
    for name in ("domain.yml", "endpoints.yml", "credentials.yml"):
        mine = yaml.safe_load((root / name).read_text()) or {}
        (root / name).write_text(yaml.safe_dump(_merge(mine, blocks[name])))
    config = yaml.safe_load((root / "config.yml").read_text())
    config["policies"] = blocks["config.yml"]["policies"]
    (root / "config.yml").write_text(yaml.safe_dump(config))
    (root / "data" / "handoff_nlu.yml").write_text(manual_blocks()["nlu.yml"])
    (root / "data" / "handoff_rules.yml").write_text(manual_blocks()["rules.yml"])
    (root / "handoff_policy.py").write_text(resources.text("handoff_policy.py"))
    planned = plan(root)
    assert (planned.changes, planned.problems) == ([], [])
