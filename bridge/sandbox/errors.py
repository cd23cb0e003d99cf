"""Why the sandbox cannot start: said in one line by the command, exit status 2."""

from __future__ import annotations


class SandboxError(Exception):
    """The sandbox cannot start (a missing file, a port in use, a Rasa that is not there)."""
