"""Interrupting a store between the commands of one operation, to test its crash analysis.

`intercept` calls `on_command(n, args)` before the n-th command the store sends (counting from
0; a script Redis had not loaded yet, and the loading itself, do not count). Commands sent
together in one round trip (a pipeline, or a batch of the store's `Line`) are one write: they
go through uncounted, as they cannot be interrupted between them. The callback may
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
    counter = _Counter(on_command)
    client, line = store.redis, store.line
    execute: Callable[..., Awaitable[Any]] = client.execute_command
    send: Callable[..., Awaitable[list[Any]]] | None = line.batch if line else None

    async def intercepting(*args: Any, **options: Any) -> Any:
        if counter.inside or str(args[0]).upper().startswith("SCRIPT"):
            return await execute(*args, **options)
        result = await counter.one(args, lambda: _caught(execute(*args, **options)))
        if isinstance(result, NoScriptError):
            raise result  # redis-py loads the script and sends it again
        return result

    async def intercepting_batch(commands: list[list[Any]], **options: Any) -> list[Any]:
        assert send is not None
        if counter.inside or len(commands) != 1 or str(commands[0][0]).upper() == "SCRIPT":
            return await send(commands, **options)
        return [await counter.one(tuple(commands[0]), lambda: _first(send(commands, **options)))]

    client.execute_command = intercepting  # type: ignore[method-assign]
    if line is not None:
        line.batch = intercepting_batch  # type: ignore[method-assign]
    try:
        yield
    finally:
        client.execute_command = execute  # type: ignore[method-assign]
        if line is not None:
            line.batch = send  # type: ignore[method-assign]


class _Counter:
    """Counts the operation's commands, calling `on_command` once before each."""

    def __init__(self, on_command: OnCommand) -> None:
        self.on_command = on_command
        self.sent = 0
        self.called = -1  # the last n the callback saw: a script re-sent after NOSCRIPT is one
        self.inside = False  # the callback's own commands are not the operation's

    async def one(self, args: tuple[Any, ...], run: Callable[[], Awaitable[Any]]) -> Any:
        if self.called < self.sent:
            self.called = self.sent
            self.inside = True
            try:
                await self.on_command(self.sent, args)
            finally:
                self.inside = False
        result = await run()
        if not isinstance(result, NoScriptError):  # not run: it is loaded and sent again
            self.sent += 1
        return result


async def _caught(reply: Awaitable[Any]) -> Any:
    try:
        return await reply
    except NoScriptError as exc:
        return exc


async def _first(replies: Awaitable[list[Any]]) -> Any:
    return (await replies)[0]


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
