"""A real `handoff-bridge serve` subprocess on a free loopback port, ready once `/ready` is."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from tests.support.serve_proc import ServeProc, free_port

__all__ = ["ServeProcess", "free_port"]


class ServeProcess(ServeProc):
    def __init__(self, env: Mapping[str, str], port: int) -> None:
        log = Path(tempfile.mkdtemp(prefix="serve-")) / "serve.log"
        env = {**env, "BRIDGE_PORT": str(port), "BRIDGE_HOST": "127.0.0.1"}
        super().__init__(env, log, ready_path="/ready")
