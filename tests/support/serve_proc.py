"""A real `handoff-bridge serve` subprocess on loopback, for attacks measured from outside:
its log goes to a file, its memory is read from /proc, and it can start under a low
file-descriptor limit."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp

# Settings that would leak in from the developer's shell or .env and change what is measured.
_OWN_PREFIXES = ("EIGHTBYEIGHT_", "RASA_", "REDIS_", "BRIDGE_", "HANDOFF_", "RELAY_", "LOG_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(**settings: str) -> dict[str, str]:
    """The environment of a serve that needs no 8x8 to start (nothing here calls it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
    env.update(
        {
            "EIGHTBYEIGHT_BASE_URL": "http://127.0.0.1:9",  # the discard port: never reached
            "EIGHTBYEIGHT_API_KEY": "key-edge",
            "EIGHTBYEIGHT_CHANNEL_ID": "ch-edge",
            "RASA_URL": "http://127.0.0.1:9",
            "BRIDGE_HOST": "127.0.0.1",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(settings)
    return env


def nofile_limit(limit: int) -> Callable[[], None]:
    """A preexec_fn that lowers RLIMIT_NOFILE in the child only."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


class ServeProc:
    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        preexec_fn: Callable[[], None] | None = None,
        cwd: Path | None = None,
        ready_path: str = "/health",
    ) -> None:
        self.port = int(env.get("BRIDGE_PORT") or free_port())
        self.env = {**env, "BRIDGE_PORT": str(self.port)}
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._preexec_fn = preexec_fn
        # An empty directory by default, so that no .env file is read.
        self._cwd = cwd or log_path.parent
        self._ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self, within: float = 20.0) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - a start, not a wait
                [sys.executable, "-m", "bridge", "serve"], env=self.env, cwd=self._cwd,
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=self._preexec_fn,
            )  # fmt: skip
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited: {self.log_path.read_text()[-2000:]}")
                try:
                    async with http.get(f"{self.url}{self._ready_path}") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("serve did not start")

    def _status_kb(self, field: str) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc status")

    def rss_mb(self) -> float:
        return self._status_kb("VmRSS") / 1024

    def peak_rss_mb(self) -> float:
        return self._status_kb("VmHWM") / 1024

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
