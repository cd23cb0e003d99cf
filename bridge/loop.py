"""The event loop the bridge's long-running commands run on.

uvloop (libuv) where it is installed: the bridge's hot path is small socket reads and writes
(the webhook, Redis, Rasa), where uvloop's transports cost a fraction of asyncio's own. asyncio's
loop otherwise (Windows, or an install without it); the behaviour is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on `new_loop()`."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
