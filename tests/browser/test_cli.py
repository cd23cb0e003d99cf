"""`handoff-bridge sandbox` as a newcomer runs it: one command, one line saying where to look,
Ctrl-C stops it. (No browser needed.)"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.browser.conftest import sandbox_env, start_sandbox


def test_it_starts_says_where_to_look_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    started = time.monotonic()
    sandbox = start_sandbox(tmp_path)
    took = time.monotonic() - started
    assert took < 10, f"the sandbox took {took:.1f} s to start"
    with urllib.request.urlopen(f"{sandbox.url}/", timeout=5) as response:
        assert b"Customer's chat" in response.read()
    banner = "\n".join(sandbox.lines)
    assert "built-in demo bot, a stand-in for Rasa" in banner
    assert "simulator (gateway API)" in banner
    assert "eght_" not in banner  # the made-up demo credentials are nobody's business

    stopping = time.monotonic()
    assert sandbox.interrupt() == 0
    assert time.monotonic() - stopping < 5
    assert sandbox.lines[-1] == "Sandbox stopped."
    assert sandbox.process.stderr is not None
    assert "Traceback" not in sandbox.process.stderr.read()


def test_the_chat_v2_api_can_be_chosen(tmp_path: Path) -> None:
    sandbox = start_sandbox(tmp_path, "--api", "chat-v2")
    try:
        assert any("simulator (chat-v2 API)" in line for line in sandbox.lines)
    finally:
        assert sandbox.interrupt() == 0


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "bridge", "sandbox", "--port", str(port)],
            cwd=tmp_path,
            env=sandbox_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"handoff-bridge sandbox: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
