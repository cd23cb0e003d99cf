"""add-to-bot and the sandbox's packaged domain work from a built wheel, away from the
checkout: what they copy is package data, not files of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.onboard.projects import AUTO_CONFIG, write

REPO = Path(__file__).resolve().parents[2]


def _run(*cmd: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_add_to_bot_from_a_built_wheel(tmp_path: Path) -> None:
    wheels, target, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # Built from a copy: setuptools' build/ directory would otherwise land in the checkout.
    for name in ("bridge", "actions"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(wheels), cwd=tmp_path)  # fmt: skip
    wheel = next(wheels.glob("handoff_bridge-*.whl"))
    _run(sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
         str(wheel), cwd=tmp_path)  # fmt: skip
    # The installed copy first on the path, the venv's dependencies after it; run from a
    # directory that is no checkout.
    env = {**os.environ, "PYTHONPATH": str(target)}
    where = _run(
        sys.executable, "-c", "import bridge; print(bridge.__file__)", cwd=tmp_path, env=env
    )
    assert where.startswith(str(target)), where
    bot = write(tmp_path / "bot", AUTO_CONFIG)
    out = _run(sys.executable, "-m", "bridge", "add-to-bot", str(bot), "--channel", "socketio",
               cwd=tmp_path, env=env)  # fmt: skip
    assert "done: handoff_policy.py" in out and (bot / "data" / "handoff.yml").is_file()
    assert (bot / "handoff_policy.py").read_text() == (REPO / "handoff_policy.py").read_text()
    demo = _run(sys.executable, "-c", "from bridge.sandbox.demo_bot import load_domain; "
                "print(sorted(load_domain().rules.items())[0])", cwd=tmp_path, env=env)  # fmt: skip
    assert "action_handoff_notice" in demo
