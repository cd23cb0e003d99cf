"""A stopping `serve` hands its partitions back and takes no new ones."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _events(log: Path) -> list[str]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(str(json.loads(line)["event"]))
        except (ValueError, KeyError):
            continue
    return out


def _wait_for(log: Path, event: str, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while _events(log).count(event) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"no {count}x {event} in {within}s: {_events(log)}")
        time.sleep(0.05)


@pytest.mark.parametrize("round_", range(3))
def test_sigterm_takes_no_lease_after_shutting_down(
    real_redis_url: str, key_prefix: str, tmp_path: Path, round_: int
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EIGHTBYEIGHT_", "RASA_", "REDIS_"))
    }
    env.update({
        "EIGHTBYEIGHT_API_KEY": "k", "EIGHTBYEIGHT_CHANNEL_ID": "ch",
        "EIGHTBYEIGHT_BASE_URL": f"http://127.0.0.1:{_free_port()}",
        "RASA_URL": f"http://127.0.0.1:{_free_port()}", "REDIS_URL": real_redis_url,
        "REDIS_KEY_PREFIX": key_prefix, "RELAY_PARTITIONS": "32", "LOG_LEVEL": "INFO",
        "BRIDGE_HOST": "127.0.0.1", "BRIDGE_PORT": str(_free_port()),
    })  # fmt: skip
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve"], env=env, stdout=subprocess.DEVNULL,
            stderr=err,
        )  # fmt: skip
        try:
            _wait_for(log, "relay_partition_acquired", 32, 30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    events = _events(log)
    after = events[events.index("shutting_down") :]
    assert "relay_partition_acquired" not in after, after
