"""Where the Rasa actions find their handoff service and settings.

Inside `serve` (and the sandbox) the action server hands them to the actions per call, in a
context variable (`serving`): nothing process-wide, so two apps in one process (tests) each
keep their own. Under the stock rasa-sdk server (`python -m rasa_sdk --actions actions`)
no one sets it: the actions then use one service per process (per event loop), built from
settings, lazily — and only with `REDIS_URL` set: two processes must never each hold their
own embedded store.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from bridge.eightbyeight import make_client
from bridge.errors import ConfigError
from bridge.service import HandoffService
from bridge.settings import Settings, load_settings
from bridge.store import open_store


@dataclass(frozen=True)
class ActionContext:
    """What an action call may use. `service` is None where only settings are needed (an
    action that would call it then fails loudly)."""

    settings: Settings
    service: HandoffService | None = None


_current: ContextVar[ActionContext | None] = ContextVar("handoff_action_context", default=None)
_in_process = False


@contextmanager
def serving(context: ActionContext) -> Iterator[None]:
    """Actions run inside this block use `context`."""
    token = _current.set(context)
    try:
        yield
    finally:
        _current.reset(token)


def declare_in_process() -> None:
    """This process hosts the actions itself (serve, sandbox, tests): no REDIS_URL needed."""
    global _in_process
    _in_process = True


def require_loadable() -> None:
    """Raise ConfigError when the actions would run with a private embedded store."""
    if _in_process:
        return
    if not load_settings().redis_url:
        raise ConfigError(
            "REDIS_URL",
            "is required to run the handoff actions outside `handoff-bridge serve` "
            "(a separate process must share the bridge's store)",
        )


@dataclass
class _Standalone:
    """The stock rasa-sdk server's own service: one per event loop of the process."""

    settings: Settings
    services: dict[int, HandoffService] = field(default_factory=dict)

    async def service(self) -> HandoffService:
        loop_id = id(asyncio.get_running_loop())
        if loop_id not in self.services:
            s = self.settings
            s.check_required()  # not the listener's checks: this process serves no bridge route
            if not s.redis_url:
                require_loadable()
            store = await open_store(
                s.redis_url, prefix=s.redis_key_prefix, partitions=s.relay_partitions
            )
            self.services[loop_id] = HandoffService(
                store, make_client(s.eightbyeight()), timing=s.handoff_timing(),
                hours=s.opening_hours(),
            )  # fmt: skip
        return self.services[loop_id]


@functools.cache
def _standalone() -> _Standalone:
    return _Standalone(load_settings())


def settings() -> Settings:
    context = _current.get()
    return context.settings if context is not None else _standalone().settings


async def service() -> HandoffService:
    """The service for this action call."""
    context = _current.get()
    if context is None:
        return await _standalone().service()
    if context.service is None:
        raise RuntimeError("this action context has no handoff service")
    return context.service
