"""The sandbox as a newcomer runs it (`python -m bridge sandbox`), and headless Chromium.

Chromium is Debian's (`apt-get install -y chromium`), driven by Playwright for Python; no
browser is ever downloaded. Under CI=true a browser test fails when Chromium cannot be
launched; elsewhere it is skipped, with the reason, when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
READY = re.compile(r"^Sandbox ready: open (http://\S+?)/?$")
START_WITHIN_S = 15.0  # the issue asks for "a few seconds"; CI machines are slow on a cold start


@dataclass
class SandboxProcess:
    process: subprocess.Popen[str]
    url: str
    reader: threading.Thread
    lines: list[str] = field(default_factory=list)  # stdout so far (the reader appends)

    def interrupt(self, within: float = 10.0) -> int:
        """Ctrl-C, as a user stops it; the exit status (once all it printed is in `lines`)."""
        self.process.send_signal(signal.SIGINT)
        status = self.process.wait(within)
        self.reader.join(within)
        return status


def sandbox_env() -> dict[str, str]:
    """The environment without settings that would change what the sandbox starts."""
    dropped = ("RASA_", "EIGHTBYEIGHT_", "BRIDGE_", "REDIS_", "LOG_LEVEL")
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(dropped)}


def start_sandbox(cwd: Path, *args: str) -> SandboxProcess:
    """`python -m bridge sandbox --port 0 ARGS` in `cwd`; returns once it said it is ready."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "sandbox", "--port", "0", *args],
        cwd=cwd,
        env=sandbox_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    ready = threading.Event()

    def read(stream: Any) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if READY.match(lines[-1]):
                ready.set()
        ready.set()  # the process ended: stop waiting

    reader = threading.Thread(target=read, args=(process.stdout,), daemon=True)
    reader.start()
    if not ready.wait(START_WITHIN_S) or not lines or not READY.match(lines[0]):
        process.kill()
        _, err = process.communicate(timeout=5)
        pytest.fail(f"the sandbox did not start within {START_WITHIN_S} s: {lines} {err[-2000:]}")
    match = READY.match(lines[0])
    assert match is not None
    return SandboxProcess(process, match[1], reader, lines)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxProcess]:
    # Run from an empty directory: the sandbox must not need the checkout as working directory.
    running = start_sandbox(tmp_path)
    yield running
    if running.process.poll() is None:
        running.interrupt()


def _chromium_unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests must run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright BrowserContext) with a fresh profile.

    Per test, not per session: Playwright's sync API keeps an event loop running while it is
    open, and the async tests that may follow need the thread's loop to themselves."""
    if not CHROMIUM.exists():
        _chromium_unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _chromium_unavailable("Playwright is not installed (pip install -e '.[dev]')")
    profile = tempfile.TemporaryDirectory(prefix="sandbox-chromium-")
    with sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                profile.name,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1440, "height": 900},
            )
        except Exception as exc:
            pytest.fail(f"Chromium at {CHROMIUM} did not launch: {exc}")
        yield context
        context.close()
    profile.cleanup()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
