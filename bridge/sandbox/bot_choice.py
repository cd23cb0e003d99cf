"""Which bot the sandbox talks to: the Rasa at `RASA_URL` when one answers, else the demo bot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from bridge.rasa.client import RasaClient
from bridge.settings import Settings

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class BotChoice:
    rasa_url: str | None  # None: the built-in demo bot
    rasa_version: str | None = None
    reason: str | None = None  # why RASA_URL was not used, when it was set

    @property
    def is_rasa(self) -> bool:
        return self.rasa_url is not None


def explicitly_set(name: str) -> str | None:
    """The variable's value when the user set it (environment or `.env`), else None.

    `Settings` cannot tell: it fills in defaults (RASA_URL has one, localhost:5005), and the
    sandbox must not pick up a Rasa nobody asked for."""
    for key, value in os.environ.items():
        if key.upper() == name and value:
            return value
    env_file = Path(".env")
    if env_file.is_file():
        for key, file_value in dotenv_values(env_file).items():
            if key.upper() == name and file_value:
                return file_value
    return None


async def choose_bot(settings: Settings) -> BotChoice:
    url = explicitly_set("RASA_URL")
    if url is None:
        return BotChoice(None)
    url = url.rstrip("/")
    client = RasaClient(url, token=settings.rasa_token, timeout_s=PROBE_TIMEOUT_S)
    try:
        answer = await client.version()
    except Exception as exc:  # any failure means "no Rasa there"; say which
        return BotChoice(None, reason=f"RASA_URL={url} did not answer GET /version ({exc})")
    finally:
        await client.close()
    if answer.get("demo_bot"):
        return BotChoice(None, reason=f"RASA_URL={url} is another sandbox's demo bot")
    version = answer.get("version")
    return BotChoice(url, str(version) if version else "unknown version")
