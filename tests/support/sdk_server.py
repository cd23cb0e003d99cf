"""A bot's own action server: the stock rasa-sdk server (`python -m rasa_sdk`) running a custom
actions module of its own, as a real process on loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CUSTOM_ACTIONS = """
import asyncio

from rasa_sdk import Action
from rasa_sdk.events import SlotSet
from rasa_sdk.interfaces import ActionExecutionRejection


class ActionOrderStatus(Action):
    def name(self):
        return "action_order_status"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=f"Your order {tracker.sender_id} has shipped.")
        return [SlotSet("order_status", "shipped")]


class ActionRefuse(Action):
    def name(self):
        return "action_refuse"

    async def run(self, dispatcher, tracker, domain):
        raise ActionExecutionRejection("action_refuse", "not today")


class ActionSlow(Action):
    def name(self):
        return "action_slow"

    async def run(self, dispatcher, tracker, domain):
        await asyncio.sleep(5)
        return []
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_sdk_server(directory: Path, module: str = "shop_actions") -> Iterator[str]:
    """Yields the server's /webhook URL. The module (CUSTOM_ACTIONS) is written to
    `directory` unless a file of that name is there already."""
    path = directory / f"{module}.py"
    if not path.exists():
        path.write_text(CUSTOM_ACTIONS)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(directory)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rasa_sdk", "--actions", module, "-p", str(port)],
        cwd=directory, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"rasa_sdk exited with {proc.returncode}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("rasa_sdk did not answer /health within 60 s")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/webhook"
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started with `start_new_session=True` and everything it spawned: Sanic's
    worker processes outlive their parent unless the whole group goes."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)  # Sanic stops on SIGINT
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the group is left
    proc.wait()
