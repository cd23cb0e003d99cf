"""Interrupting a store between the commands of one operation, to test its crash analysis.

`intercept` calls `on_command(n, args)` before the n-th command the store sends (counting from
0; a script Redis had not loaded yet, and the loading itself, do not count). The callback may
raise `Crashed` (the process died there: nothing from then on reaches Redis) or run another
store operation first (a concurrent process acting between two steps); the commands of that
operation go straight through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import NoScriptError

from bridge.store import RedisStore

OnCommand = Callable[[int, tuple[Any, ...]], Awaitable[None]]


class Crashed(Exception):
    """The process died before this command reached Redis."""


@asynccontextmanager
async def intercept(store: RedisStore, on_command: OnCommand) -> AsyncIterator[None]:
    client = store.redis
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    sent = 0
    called = -1  # the last n the callback saw: a script re-sent after NOSCRIPT is one command
    inside = False  # the callback's own commands are not the operation's

    async def intercepting(*args: Any, **options: Any) -> Any:
        nonlocal sent, called, inside
        if inside or str(args[0]).upper().startswith("SCRIPT"):
            return await execute(*args, **options)
        if called < sent:
            called = sent
            inside = True
            try:
                await on_command(sent, args)
            finally:
                inside = False
        try:
            result = await execute(*args, **options)
        except NoScriptError:
            raise  # not run: redis-py loads the script and sends it again
        sent += 1
        return result

    client.execute_command = intercepting  # type: ignore[method-assign]
    try:
        yield
    finally:
        client.execute_command = execute  # type: ignore[method-assign]


def crash_at(step: int) -> OnCommand:
    async def on_command(n: int, args: tuple[Any, ...]) -> None:
        if n == step:
            raise Crashed(f"before command {n}: {args[0]}")

    return on_command


def before(step: int, operation: Callable[[], Awaitable[Any]]) -> OnCommand:
    async def on_command(n: int, args: tuple[Any, ...]) -> None:
        if n == step:
            await operation()

    return on_command
