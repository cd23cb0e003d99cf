"""Where the Rasa actions find their handoff service.

Inside `serve` (and the sandbox) the process installs its own service, so the actions call it
in-process. Under the stock rasa-sdk server (`python -m rasa_sdk --actions actions`) the
actions build one from settings, lazily, in the server's event loop — and only with
`REDIS_URL` set: two processes must never each hold their own embedded store.
"""

from __future__ import annotations

import asyncio

from bridge.eightbyeight import make_client
from bridge.errors import ConfigError
from bridge.service import HandoffService
from bridge.settings import Settings, load_settings
from bridge.store import open_store

_installed: HandoffService | None = None
_in_process = False
_built: dict[int, tuple[HandoffService, Settings]] = {}  # per event loop
_settings: Settings | None = None


def declare_in_process() -> None:
    """This process hosts the actions itself (serve, sandbox, tests): no REDIS_URL needed."""
    global _in_process
    _in_process = True


def install(service: HandoffService, settings: Settings) -> None:
    """Make `service` the one the actions use in this process."""
    global _installed, _settings
    declare_in_process()
    _installed, _settings = service, settings


def require_loadable() -> None:
    """Raise ConfigError when the actions would run with a private embedded store."""
    if _in_process:
        return
    settings = load_settings()
    if not settings.redis_url:
        raise ConfigError(
            "REDIS_URL",
            "is required to run the handoff actions outside `handoff-bridge serve` "
            "(a separate process must share the bridge's store)",
        )


def settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


async def service() -> HandoffService:
    """The service for the running event loop."""
    if _installed is not None:
        return _installed
    loop_id = id(asyncio.get_running_loop())
    if loop_id not in _built:
        s = settings()
        s.check_for_serve()
        if not s.redis_url:
            require_loadable()
        store = await open_store(
            s.redis_url, prefix=s.redis_key_prefix, partitions=s.relay_partitions
        )
        service = HandoffService(
            store,
            make_client(s.eightbyeight()),
            timing=s.handoff_timing(),
            hours=s.opening_hours(),
        )
        _built[loop_id] = (service, s)
    return _built[loop_id][0]
