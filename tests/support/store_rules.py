"""The key rule of bridge/store/keys.py, checked on a live store.

`Recorder` wraps a store's client and records every atomic step as Redis receives it: each
script call (EVALSHA and friends, with its KEYS) and each transaction (a pipeline with
transaction=True, with every command queued in it). Nothing lists the store's scripts or
methods: whatever the store runs is recorded, so a new script or transaction is checked the day
it is written. `violations` then says what breaks the rule:

1. an atomic step over keys of more than one hash slot (on a single Redis, a key of a kind in
   `keys.SINGLE_REDIS_LEGACY` aside, and each part of a step in `keys.SINGLE_REDIS_JOINED` in
   a slot of its own), or a script given one of our keys in ARGV (it would touch a key Redis
   cannot route);
2. a key left without a TTL whose kind is not in `keys.OWNED`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from bridge.store import RedisStore
from bridge.store.keys import OWNED, SINGLE_REDIS_JOINED, SINGLE_REDIS_LEGACY

# Commands that run server-side code atomically; args: command, script/sha/name, numkeys, ...
SCRIPT_COMMANDS = {"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"}


def slot(key: str) -> int:
    return int(key_slot(key.encode()))


def kind(key: str) -> str:
    """A key's kind: its name, the first segment after the hash tag."""
    return key.split("}:", 1)[1].split(":")[0]


@dataclass
class Step:
    what: str  # a script's name in `store.scripts`, "eval" for another script, or "multi"
    keys: list[str]
    argv_keys: list[str] = field(default_factory=list)  # ARGV values that are our keys
    single_redis: bool = False  # run on a single Redis, not a Cluster

    def slots(self) -> set[int]:
        """The slots the step must share: on a single Redis, legacy keys aside; of a joined
        step (`SINGLE_REDIS_JOINED`, single Redis only), those of the part that spans most."""
        legacy = SINGLE_REDIS_LEGACY if self.single_redis else {}
        keys = [k for k in self.keys if kind(k) not in legacy]
        first = SINGLE_REDIS_JOINED.get(self.what) if self.single_redis else None
        if first is None:
            return {slot(k) for k in keys}
        parts = ({slot(k) for k in keys if kind(k) in first},
                 {slot(k) for k in keys if kind(k) not in first})  # fmt: skip
        return max(parts, key=len)


class Recorder:
    """Records the atomic steps a store sends through its client (installed on creation)."""

    def __init__(self, store: RedisStore) -> None:
        self.steps: list[Step] = []
        self.touched: set[str] = set()  # every key named in any command
        self.base = store.keys.base  # every key of this store starts with it
        self._names = {script.sha: name for name, script in store.scripts.items()}
        client = store.redis
        self.single_redis = not isinstance(client, RedisCluster)
        execute: Callable[..., Awaitable[Any]] = client.execute_command
        make_pipeline: Callable[..., Any] = client.pipeline

        async def recording_execute(*args: Any, **options: Any) -> Any:
            self._note_keys(args)
            self._note_script(args)
            return await execute(*args, **options)

        def recording_pipeline(transaction: Any = True, shard_hint: Any = None) -> Any:
            pipe = make_pipeline(transaction=transaction, shard_hint=shard_hint)
            queued: list[tuple[Any, ...]] = []
            queue: Callable[..., Any] = pipe.execute_command
            run: Callable[..., Awaitable[Any]] = pipe.execute

            def recording_queue(*args: Any, **options: Any) -> Any:
                self._note_keys(args)
                queued.append(args)
                return queue(*args, **options)

            async def recording_run(*args: Any, **options: Any) -> Any:
                if transaction:
                    keys = [str(a) for cmd in queued for a in cmd[1:] if self._is_key(a)]
                    self.steps.append(Step("multi", keys, single_redis=self.single_redis))
                else:  # no atomicity promised, but each script in it is still a step
                    for cmd in queued:
                        self._note_script(cmd)
                queued.clear()
                return await run(*args, **options)

            pipe.execute_command = recording_queue
            pipe.execute = recording_run
            return pipe

        client.execute_command = recording_execute  # type: ignore[method-assign]
        client.pipeline = recording_pipeline  # type: ignore[method-assign]
        if store.line is not None:  # the hot path's commands bypass the client
            send: Callable[..., Awaitable[Any]] = store.line.batch

            async def recording_batch(commands: Any, **options: Any) -> Any:
                for command in commands:
                    self._note_keys(tuple(command))
                    self._note_script(tuple(command))
                return await send(commands, **options)

            store.line.batch = recording_batch  # type: ignore[method-assign]

    def _is_key(self, value: Any) -> bool:
        return isinstance(value, str) and value.startswith(self.base)

    def _note_keys(self, args: tuple[Any, ...]) -> None:
        self.touched.update(str(a) for a in args[1:] if self._is_key(a))

    def _note_script(self, args: tuple[Any, ...]) -> None:
        if str(args[0]).upper() not in SCRIPT_COMMANDS:
            return
        numkeys = int(args[2])
        keys = [str(k) for k in args[3 : 3 + numkeys]]
        argv_keys = [str(a) for a in args[3 + numkeys :] if self._is_key(a)]
        name = self._names.get(str(args[1]), "eval")
        self.steps.append(Step(name, keys, argv_keys, self.single_redis))


def step_violations(steps: list[Step]) -> list[str]:
    found = []
    for step in steps:
        if len(step.slots()) > 1:
            found.append(f"{step.what} spans slots {sorted(step.slots())}: {step.keys}")
        if step.argv_keys:
            found.append(f"{step.what} is given keys in ARGV: {step.argv_keys}")
    return found


async def keys_without_ttl(store: RedisStore, keys: set[str] | None = None) -> list[str]:
    """Of `keys`, or else of every key of this store (its prefix; on a Cluster, over every
    node), those that exist without a TTL."""
    if keys is None:
        keys = {str(k) async for k in store.redis.scan_iter(match=f"{store.keys.base}*", count=500)}
    return sorted([key for key in keys if await store.redis.pttl(key) == -1])


async def key_violations(store: RedisStore, keys: set[str] | None = None) -> list[str]:
    """Keys without a TTL whose kind has no owner: of `keys`, or of a SCAN of the store's
    prefix (which also finds a key a script made without naming it in KEYS)."""
    return [
        f"{key} has no TTL and its kind {kind(key)!r} has no owner in keys.OWNED"
        for key in await keys_without_ttl(store, keys)
        if kind(key) not in OWNED
    ]


async def violations(store: RedisStore, recorder: Recorder) -> list[str]:
    """What the recorded steps and the keys they named break (cheap: no SCAN)."""
    return step_violations(recorder.steps) + await key_violations(store, set(recorder.touched))
