"""A private Redis Cluster for tests: three masters from the machine's `redis-server`.

Each node runs in its own temporary directory on a free loopback port (its cluster bus on the
port + 10000), `redis-cli --cluster create` assigns the slots, and `stop` kills what `start`
started and removes the directories.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MASTERS = 3
READY_TIMEOUT_S = 20.0


def binaries_missing() -> list[str]:
    return [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(n: int) -> list[int]:
    """Ports whose cluster bus port (+10000) is free too; below the ephemeral range."""
    ports: list[int] = []
    while len(ports) < n:
        port = random.randrange(20000, 30000)
        if port not in ports and _port_free(port) and _port_free(port + 10000):
            ports.append(port)
    return ports


class LocalCluster:
    def __init__(self) -> None:
        self.ports = _free_ports(MASTERS)
        self.dir = Path(tempfile.mkdtemp(prefix="hb-redis-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The bridge's URL for this cluster: any one node, with the cluster scheme."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        try:
            for port in self.ports:
                self._start_node(port)
            for port in self.ports:
                self._wait(lambda p=port: self._cli(p, "PING") == "PONG", f"node {port}")
            nodes = [f"127.0.0.1:{p}" for p in self.ports]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0",
                 "--cluster-yes"],
                check=True, capture_output=True, timeout=READY_TIMEOUT_S,
            )  # fmt: skip
            for port in self.ports:
                self._wait(lambda p=port: "cluster_state:ok" in self._cli(p, "CLUSTER", "INFO"),
                           f"cluster state ok on {port}")  # fmt: skip
        except BaseException:
            self.stop()
            raise

    def _start_node(self, port: int) -> None:
        node_dir = self.dir / str(port)
        node_dir.mkdir()
        self.procs.append(
            subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--dir",
                    str(node_dir),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--logfile",
                    "redis.log",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
        )

    @staticmethod
    def _cli(port: int, *command: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *command],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
        return done.stdout.strip()

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a redis-server exited while waiting for {what}")
            time.sleep(0.05)
        raise TimeoutError(f"redis cluster: timed out waiting for {what}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
