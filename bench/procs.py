"""The processes a benchmark runs: `serve`, the ceiling and the Rasa stand-in, on loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (no psutil)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14, 15)


class Process:
    """A child process serving HTTP on 127.0.0.1:port; `ready_path` answers 200 when up."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], port: int,
                 ready_path: str, log: Path | None = None) -> None:  # fmt: skip
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.ready_path = ready_path
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, within_s: float = 30.0) -> None:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115, ASYNC230
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - a start, not a wait
            self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(int(within_s / 0.05)):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
                try:
                    async with http.get(self.url + self.ready_path) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EIGHTBYEIGHT_", "RASA_", "REDIS_", "RELAY_", "BRIDGE_", "EVENT_"))}  # fmt: skip
    env["PYTHONPATH"] = str(ROOT)
    return env


def stand_in() -> Process:
    port = free_port()
    argv = [sys.executable, "-m", "bench.standin", str(port)]
    return Process("rasa-stand-in", argv, _base_env(), port, "/_bench/count")


def ceiling(redis_url: str, prefix: str, rasa_url: str) -> Process:
    port = free_port()
    argv = [sys.executable, "-m", "bench.ceiling", str(port), redis_url, prefix, rasa_url]
    return Process("ceiling", argv, _base_env(), port, "/ready")


def serve(settings: dict[str, str], log: Path | None) -> Process:
    port = free_port()
    env = {**_base_env(), **settings, "BRIDGE_HOST": "127.0.0.1", "BRIDGE_PORT": str(port)}
    argv = [sys.executable, "-m", "bridge", "serve"]
    return Process("serve", argv, env, port, "/ready", log)
