"""Cluster safety: every atomic step touches one hash slot, and nothing uses KEYS or SCAN.

The keys are recorded at the client, as Redis would receive them (EVALSHA's KEYS, a MULTI's
commands), while a scenario drives every method of the store, so a new script or transaction
is checked without anyone listing it here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.crc import key_slot

from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import RedisStore

from .conftest import OWNER

PACKAGE = Path(__file__).resolve().parents[2] / "bridge"


@dataclass
class Step:
    what: str  # script name, or "multi"
    keys: list[str]


def slots(keys: list[str]) -> set[int]:
    return {int(key_slot(k.encode())) for k in keys}


def record_atomic_steps(store: RedisStore) -> list[Step]:
    """Wrap the store's client so every script call and MULTI is recorded with its keys."""
    steps: list[Step] = []
    client = store.redis
    names = {script.sha: name for name, script in store.scripts.items()}
    execute_command: Callable[..., Awaitable[Any]] = client.execute_command
    make_pipeline = client.pipeline

    async def recording_execute(*args: Any, **options: Any) -> Any:
        if str(args[0]).upper() in ("EVALSHA", "EVAL"):
            numkeys = int(args[2])
            steps.append(Step(names.get(str(args[1]), "eval"), list(args[3 : 3 + numkeys])))
        return await execute_command(*args, **options)

    def recording_pipeline(transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = make_pipeline(transaction=transaction, shard_hint=shard_hint)
        execute = pipe.execute

        async def recording_pipe_execute(raise_on_error: bool = True) -> Any:
            if transaction:  # a non-transactional pipeline promises no atomicity
                steps.append(Step("multi", [str(a[1]) for a, _ in pipe.command_stack]))
            return await execute(raise_on_error)

        pipe.execute = recording_pipe_execute  # type: ignore[method-assign]
        return pipe

    client.execute_command = recording_execute  # type: ignore[method-assign]
    client.pipeline = recording_pipeline  # type: ignore[method-assign]
    return steps


async def drive_every_method(store: RedisStore) -> None:
    s, c, early = SenderId("s1"), ConversationId("c1"), ConversationId("c2")
    await store.link(s, c)
    await store.sender_of(c)
    await store.save_handoff(s, {"state": "live"}, 1)
    token = await store.acquire_sender_lease(s, 60_000)
    assert token
    await store.release_sender_lease(s, token)
    await store.acquire_partition(1, OWNER, 60_000)
    await store.relay_heartbeat(OWNER, 60_000)
    for event_id in ("e1", "e2", "e3", "e4"):
        await store.enqueue_event(1, EventId(event_id), "p", 60)
    e1, e2, e3, e4 = await store.read_events(1, 10)
    await store.note_attempt(1, e1.entry_id)
    await store.ack_event(1, e1.entry_id, OWNER)
    await store.dead_letter(1, e2, "r", OWNER)
    await store.hold_event(1, early, e3, 1, OWNER)
    await store.hold_event(1, early, e4, 1, OWNER)
    await store.unhold_event(1, early, e3.entry_id, OWNER)
    await store.dead_letter(1, e4, "r", OWNER)
    dead = await store.list_dead_letters()
    await store.replay_dead_letter(1, dead[0].dead_id)
    await drive_message_identity(store, early)
    await store.release_partition(1, OWNER)
    await store.outbox_push(s, "m")
    await store.outbox_pop(s, "m")


async def drive_message_identity(store: RedisStore, conversation: ConversationId) -> None:
    """The relay's delivered-message record (bridge/relay/identity.py)."""
    for event_id in ("m1", "m2"):
        await store.enqueue_event(1, EventId(event_id), "p", 60)
    m1, m2 = (await store.read_events(1, 10))[-2:]
    await store.claim_message(1, conversation, OWNER, "d", m1.event_id, 0)
    await store.message_state(1, conversation, "d", 1)
    await store.ack_message(1, m1.entry_id, OWNER, conversation, "d", 1)
    await store.hold_event(1, conversation, m2, 1, OWNER)
    await store.unhold_message(1, conversation, m2.entry_id, OWNER, "d", 2)


async def test_every_atomic_step_stays_in_one_slot(store: RedisStore) -> None:
    steps = record_atomic_steps(store)
    await drive_every_method(store)

    assert {step.what for step in steps} >= set(store.scripts), "a script was not exercised"
    link = Step(
        "multi",
        [store.keys.record(SenderId("s1"))] * 3 + [store.keys.conversation(ConversationId("c1"))],
    )
    cross_slot = [step for step in steps if len(slots(step.keys)) != 1]
    # The one documented exception: link writes both directions of the mapping.
    assert cross_slot == [link]


async def test_the_recorder_sees_cross_slot_steps(store: RedisStore) -> None:
    """The check above can fail: a script called over two slots is recorded as such."""
    steps = record_atomic_steps(store)
    await store.scripts["release_lease"](keys=["{a}x", "{b}y"], args=["t"])
    assert len(slots(steps[0].keys)) == 2


# --- no KEYS, no SCAN ---

LUA_FORBIDDEN = re.compile(r"redis\.p?call\(\s*['\"](keys|scan)['\"]", re.IGNORECASE)
CLIENT_FORBIDDEN = {"keys", "scan", "scan_iter"}


def forbidden_uses(source: str) -> list[str]:
    """Calls of KEYS/SCAN in Python source (client methods or raw commands) or in Lua text.
    `dict.keys()` takes no arguments; the Redis client's `keys(pattern)` does."""
    found = [m.group(0) for m in LUA_FORBIDDEN.finditer(source)]
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else ""
        if name in CLIENT_FORBIDDEN and (node.args or node.keywords or name != "keys"):
            found.append(ast.unparse(node))
        if name == "execute_command" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and str(first.value).upper() in ("KEYS", "SCAN"):
                found.append(ast.unparse(node))
    return found


def test_no_code_path_uses_keys_or_scan() -> None:
    sources = sorted(PACKAGE.rglob("*.py")) + sorted(PACKAGE.rglob("*.lua"))
    assert any(p.parent.name == "store" for p in sources)
    offenders = {
        str(p.relative_to(PACKAGE)): uses
        for p in sources
        if (uses := forbidden_uses(p.read_text()) if p.suffix == ".py" else _lua(p))
    }
    assert offenders == {}


def _lua(path: Path) -> list[str]:
    return [m.group(0) for m in LUA_FORBIDDEN.finditer(path.read_text())]


def test_the_detector_detects() -> None:
    bad = """
async def f(r, d):
    d.keys()
    await r.keys("hb:*")
    async for k in r.scan_iter(match="x*"):
        pass
    await r.execute_command("KEYS", "*")
S = "return redis.call('KEYS', ARGV[1])"
"""
    assert len(forbidden_uses(bad)) == 4
