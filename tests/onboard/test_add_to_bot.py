"""`handoff-bridge add-to-bot`: what it adds, what it keeps, and when it refuses."""

from __future__ import annotations

import difflib
import fnmatch
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.cli import main
from bridge.onboard import Options, plan
from tests.onboard.projects import (
    AUTO_CONFIG,
    DOMAIN_FOLDER,
    EXPLICIT_POLICIES,
    FLUSH_POLICIES,
    OWN_ACTIONS_5055,
    OWN_ACTIONS_ELSEWHERE,
    snapshot,
    write,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = ["MemoizationPolicy", "RulePolicy", "UnexpecTEDIntentPolicy", "TEDPolicy"]
HANDOFF = "handoff_policy.HandoffPolicy"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Exit code and output (a refusal goes to stderr, everything else to stdout)."""
    code = main(["add-to-bot", *args])
    out, err = capsys.readouterr()
    return code, out + err


def load(root: Path, name: str) -> Any:
    return yaml.safe_load((root / name).read_text())


def policy_names(root: Path) -> list[str]:
    return [p["name"] for p in load(root, "config.yml")["policies"]]


def comments(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("#")]


def test_a_rasa_init_project_gets_the_whole_handoff_and_keeps_its_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, AUTO_CONFIG)
    code, out = run(capsys, str(root), "--channel", "callback")
    assert code == 0, out
    # Auto-configured policies are written out (else naming one drops Rasa's defaults).
    assert policy_names(root) == [*DEFAULTS, HANDOFF]
    domain = load(root, "domain.yml")
    assert {"greet", "goodbye", "human_handoff", "end_handoff", "EXTERNAL_agent_left"} <= set(
        domain["intents"]
    )
    assert {"handoff_active", "handoff_agent", "handoff_queue"} <= set(domain["slots"])
    assert {"utter_greet", "utter_default", "utter_handoff_connecting"} <= set(domain["responses"])
    assert domain["responses"]["utter_handoff_queued"][0]["condition"][0]["value"] is None
    assert "action_handoff_forward" in domain["actions"]
    data = load(root, "data/handoff.yml")
    assert [i["intent"] for i in data["nlu"]] == ["human_handoff"]  # no end_handoff examples
    assert {"intent:EXTERNAL_agent_joined", "intent:nlu_fallback"} <= {
        r["steps"][0].get("intent") and f"intent:{r['steps'][0]['intent']}" for r in data["rules"]
    }
    # Rasa expands ${...} only in a plain scalar: the token must not be quoted.
    assert "  token: ${BRIDGE_ACTION_TOKEN}\n" in (root / "endpoints.yml").read_text()
    assert load(root, "endpoints.yml")["action_endpoint"]["url"] == Options.bridge_url
    assert load(root, "credentials.yml")["callback"] == {"url": "http://localhost:5034/bot"}
    assert (root / "handoff_policy.py").read_text() == (REPO / "handoff_policy.py").read_text()
    for name in ("config.yml", "domain.yml", "endpoints.yml", "credentials.yml"):
        kept = comments((root / name).read_text())
        assert all(c in kept for c in comments(AUTO_CONFIG[name])), name
    assert load(root, "domain.yml")["responses"]["utter_greet"] == [{"text": "Hey! How are you?"}]
    assert "done: config.yml: policies: write out Rasa 3.6's default policies" in out


def test_a_second_run_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write(tmp_path, AUTO_CONFIG)
    assert run(capsys, str(root), "--channel", "socketio")[0] == 0
    before = snapshot(root)
    code, out = run(capsys, str(root), "--channel", "socketio")
    assert code == 0 and "nothing to change" in out
    assert snapshot(root) == before


def test_check_lists_what_is_missing_and_passes_once_it_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, AUTO_CONFIG)
    before = snapshot(root)
    code, out = run(capsys, "--check", str(root))
    assert code == 1 and snapshot(root) == before
    for missing in ("config.yml", "domain.yml", "data/handoff.yml", "endpoints.yml",
                    "handoff_policy.py", "credentials.yml: no channel can receive"):  # fmt: skip
        assert missing in out, missing
    run(capsys, str(root))  # without --channel: the push channel is still missing
    code, out = run(capsys, "--check", str(root))
    assert code == 1 and out.count("\n") == 1 and "rest drops them" in out
    run(capsys, str(root), "--channel", "callback", "--callback-url", "https://front.example/bot")
    assert run(capsys, "--check", str(root)) == (0, "ok: the handoff is in place\n")


def test_explicit_policies_are_kept_and_rule_policy_added_for_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, EXPLICIT_POLICIES)
    code, out = run(capsys, str(root))
    assert code == 0
    assert policy_names(root) == ["RulePolicy", "MemoizationPolicy", "TEDPolicy", HANDOFF]
    assert load(root, "config.yml")["policies"][2] == {"name": "TEDPolicy", "max_history": 3}
    assert "epochs: 50        # small data" in (root / "config.yml").read_text()
    assert "no FallbackClassifier" in out


def test_an_outranked_handoff_policy_is_raised_above_rule_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = EXPLICIT_POLICIES["config.yml"] + (
        "  - name: RulePolicy\n    priority: 6\n  - name: handoff_policy.HandoffPolicy\n"
        "    priority: 3\n"
    )
    root = write(tmp_path, {**EXPLICIT_POLICIES, "config.yml": config})
    code, out = run(capsys, "--check", str(root))
    assert code == 1 and "priority" in out
    run(capsys, str(root))
    policies = load(root, "config.yml")["policies"]
    assert [p.get("priority") for p in policies if p["name"] == HANDOFF] == [7]
    assert policy_names(root).count(HANDOFF) == 1


def test_a_domain_folder_gets_a_file_of_its_own_with_only_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path, DOMAIN_FOLDER)
    code, _ = run(capsys, str(root))
    assert code == 0
    for name in ("domain/core.yml", "domain/responses.yml"):
        assert (root / name).read_text() == DOMAIN_FOLDER[name]
    added = load(root, "domain/handoff.yml")
    assert "utter_default" not in added["responses"]  # the bot has its own
    assert "greet" not in added["intents"] and "human_handoff" in added["intents"]
    assert not (root / "domain.yml").exists()
    before = snapshot(root)
    assert run(capsys, "--check", str(root))[0] == 1  # only the push channel is missing
    assert snapshot(root) == before


def test_the_bots_own_action_server_becomes_the_bridges_upstream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write(tmp_path / "a", OWN_ACTIONS_ELSEWHERE)
    _, out = run(capsys, str(root))
    assert "BRIDGE_ACTION_UPSTREAM=http://actions.internal:5055/webhook" in out
    assert load(root, "endpoints.yml")["action_endpoint"]["url"] == Options.bridge_url
    clash = write(tmp_path / "b", OWN_ACTIONS_5055)
    _, out = run(capsys, str(clash))
    assert "-p 5056" in out and "BRIDGE_ACTION_UPSTREAM=http://localhost:5056/webhook" in out
    assert "5055 is rasa-sdk's default" in out


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("domain.yml", "intents: [greet\n", "domain.yml is not valid YAML"),
        ("domain.yml", "- just\n- a list\n", "domain.yml is not a YAML mapping"),
        ("config.yml", "policies: RulePolicy\n", "`policies` is not a list"),
        ("domain.yml", "intents: {greet: 1}\n", "`intents` is not a list"),
        ("endpoints.yml", "action_endpoint: http://x\n", "`action_endpoint` is not a mapping"),
        ("data/rules.yml", "rules: [\n", "data/rules.yml is not valid YAML"),
    ],
)
def test_a_project_it_cannot_understand_is_refused_and_left_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, why: str
) -> None:
    root = write(tmp_path, {**AUTO_CONFIG, name: text})
    before = snapshot(root)
    code, out = run(capsys, str(root), "--channel", "callback")
    assert code == 2 and why in out and "Nothing was changed." in out
    assert snapshot(root) == before


def test_a_directory_that_is_no_rasa_project_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, str(tmp_path))
    assert code == 2 and "no config.yml" in out and list(tmp_path.iterdir()) == []


def test_the_example_bot_of_this_repository_has_the_handoff_already() -> None:
    planned = plan(REPO)
    assert [c for c in planned.changes if not c.startswith("endpoints.yml")] == []
    assert planned.problems == []


def test_what_add_to_bot_copies_ships_inside_the_package() -> None:
    files = resources.files("bridge.onboard").joinpath("files")
    shipped = sorted(p.name for p in files.iterdir() if p.is_file())
    assert shipped == ["domain.yml", "handoff_policy.py", "nlu.yml", "policies.yml", "rules.yml"]
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["bridge"]
    for name in shipped:
        assert any(fnmatch.fnmatch(f"onboard/files/{name}", g) for g in globs), name
    # One policy module: the example bot's is the one add-to-bot copies.
    assert (
        files.joinpath("handoff_policy.py").read_text() == (REPO / "handoff_policy.py").read_text()
    )


def removed_lines(before: str, after: str) -> list[str]:
    diff = difflib.ndiff(before.splitlines(), after.splitlines())
    return [line[2:] for line in diff if line.startswith("- ")]


@pytest.mark.parametrize(
    "project", [AUTO_CONFIG, EXPLICIT_POLICIES, FLUSH_POLICIES], ids=["auto", "indented", "flush"]
)
def test_the_bots_own_lines_stay_as_they_were(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], project: dict[str, str]
) -> None:
    root = write(tmp_path, project)
    run(capsys, str(root), "--channel", "callback")
    for name in ("config.yml", "endpoints.yml", "credentials.yml", "data/nlu.yml"):
        assert removed_lines(project[name], (root / name).read_text()) == [], name
    # domain.yml mixes both list indentations (as rasa init's does); one style is kept, and
    # the other's lines move only in their indentation.
    after = (root / "domain.yml").read_text()
    moved = removed_lines(project["domain.yml"], after)
    words = {" ".join(line.split()) for line in after.splitlines()}
    assert len(moved) <= 2 and all(" ".join(line.split()) in words for line in moved), after
    # The blank line before `responses:` stays there, below the intents added above it.
    assert "\n\nresponses:" in after and "- goodbye\n\n" not in after
