"""The operator commands: `check`, `provision`, `status`, `end`, `dead-letters`, `forget`.

One module per command, each with `add(subparsers)`; they read the same settings as `serve`.
Exit codes are `bridge.ops.common.Exit` (the README lists them).
"""

from __future__ import annotations

from typing import Any

from bridge.ops import check, dead_letters, end, forget, provision, status

COMMANDS = (check, provision, status, end, dead_letters, forget)


def register(sub: Any) -> None:
    for command in COMMANDS:
        command.add(sub)
