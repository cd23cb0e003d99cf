"""The key rule of bridge/store/keys.py: every atomic step in one hash slot, every key with a
TTL or an owner; and nothing uses KEYS or SCAN.

The `store` fixture checks the rule after every contract test (tests/support/store_rules.py
records what the store sends, on every backend, the Redis Cluster included). Here a scenario
drives every method of the store, so that every script is exercised at least once.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions as rexc

from bridge.handoff import DisarmTimer, TimerFired, TimerKind
from bridge.ids import ConversationId, EventId, SenderId
from bridge.store import RedisStore, Store, live_index, open_store
from bridge.store.base import Begin, RunAck, RunMessage
from bridge.store.keys import OWNED, SINGLE_REDIS_JOINED
from tests.support.store_rules import Recorder, Step, key_violations, slot, step_violations

from .conftest import OWNER

PACKAGE = Path(__file__).resolve().parents[2] / "bridge"


def record_calls(store: RedisStore) -> set[str]:
    """Which of the `Store` methods the scenario calls (wrapped on the instance)."""
    called: set[str] = set()
    for name in store_methods():
        method = getattr(store, name)

        async def wrapper(*args: Any, _name: str = name, _m: Any = method, **kw: Any) -> Any:
            called.add(_name)
            return await _m(*args, **kw)

        setattr(store, name, wrapper)
    return called


def store_methods() -> set[str]:
    return {
        name
        for name, member in vars(Store).items()
        if inspect.iscoroutinefunction(member) and not name.startswith("_")
    }


async def drive_every_method(store: RedisStore) -> None:
    s, c, early = SenderId("s1"), ConversationId("c1"), ConversationId("c2")
    await store.ping()
    await store.link(s, c)
    await store.sender_of(c)
    await store.load_handoff(s)
    await store.save_handoff(s, {"state": "live"}, 1)
    await live_index.live_senders(store, 10)  # the operator's and the sweep's read
    token = await store.acquire_sender_lease(s, 60_000)
    assert token
    await store.release_sender_lease(s, token)
    await store.acquire_partition(1, OWNER, 60_000)
    await store.relay_heartbeat(OWNER, 60_000)
    for event_id in ("e1", "e2", "e3", "e4", "e5", "e6"):
        claimed = await store.claim_event(EventId(event_id), "h", settled=False)
        await store.enqueue_event(1, EventId(event_id), "p", 60, claimed_ms=claimed.at_ms)
    await store.settle_event(EventId("e6"))
    e1, e2, e3, e4, e5, e6 = await store.read_events(1, 10)
    await store.note_attempt(1, e1.entry_id)
    await store.begin_attempt(1, e5.entry_id, s)
    silence = TimerFired(TimerKind.USER_SILENCE, early, 1, 5)
    await store.ack_event(1, e1.entry_id, OWNER, None, [silence, DisarmTimer(silence)])
    await store.ack_event(1, e6.entry_id, OWNER, e6.event_id, claimed=True)
    await store.dead_letter(1, e2, "r", OWNER)
    await store.hold_event(1, early, e3, 1, OWNER)
    await store.hold_event(1, early, e4, 1, OWNER)
    await store.held_conversations(1)
    await store.held_events(1, early)
    await store.unhold_event(1, early, e3.entry_id, OWNER)
    await store.dead_letter(1, e4, "r", OWNER)
    dead = await store.list_dead_letters()
    await store.replay_dead_letter(1, dead[0].dead_id)
    await store.arm_timer(1, TimerFired(TimerKind.USER_SILENCE, early, 1, 5))
    await store.disarm_timer(1, TimerFired(TimerKind.AGENT_SILENCE, early, 1, 5))
    await store.fire_timers(1, 10, OWNER)
    await drive_message_identity(store, early)
    await store.release_partition(1, OWNER)
    await store.relay_leave(OWNER)
    await store.outbox_push(s, "m")
    await store.outbox_senders()
    await store.outbox_peek(s)
    await store.outbox_pop(s, "m")


async def drive_message_identity(store: RedisStore, conversation: ConversationId) -> None:
    """The relay's delivered-message record (bridge/relay/identity.py)."""
    for event_id in ("m1", "m2"):
        await store.enqueue_event(1, EventId(event_id), "p", 60)
    m1, m2 = (await store.read_events(1, 10))[-2:]
    await store.claim_message(1, conversation, OWNER, "d", m1.event_id, 0)
    await store.claim_and_begin(
        1, conversation, OWNER, "d", m1.event_id, 0, m1.entry_id, SenderId("s1")
    )
    await store.message_state(1, conversation, "d", 1)
    await store.ack_message(1, m1.entry_id, OWNER, conversation, "d", 1, m1.event_id, claimed=True)
    await store.hold_event(1, conversation, m2, 1, OWNER)
    await store.unhold_message(1, conversation, m2.entry_id, OWNER, "d", 2)
    for event_id in ("m3", "m4"):
        await store.enqueue_event(1, EventId(event_id), "p", 60)
    m3, m4 = (await store.read_events(1, 10))[-2:]
    run = [RunMessage(m.entry_id, m.event_id, "d", 0) for m in (m3, m4)]
    claims, _ = await store.claim_and_begin_run(1, conversation, OWNER, run, SenderId("s1"))
    done = [
        RunAck(m.entry_id, "d", c.ordinal, m.event_id, claimed=True)
        for m, c in zip((m3, m4), claims, strict=True)
    ]
    await store.ack_messages(1, OWNER, conversation, done)
    begin = Begin(OWNER, conversation, "d", 0, SenderId("s1"), frontier=f"{2**45}-0")
    m5 = await store.enqueue_event(1, EventId("m5"), "p", 60, begin=begin)
    assert m5 is not None and m5.started is not None
    await store.ack_message(1, m5.entry.entry_id, OWNER, conversation, "d", m5.started.ordinal)
    # The door's claim and enqueue: one step on a single Redis (the step after it, too).
    await store.admit_event(1, EventId("m6"), "h", "p", 60)
    m7 = await store.admit_event(1, EventId("m7"), "h", "p", 60, begin=begin)
    assert m7.enqueued is not None and m7.enqueued.started is not None


async def test_every_method_and_script_keeps_the_key_rule(store: RedisStore) -> None:
    called = record_calls(store)
    recorder = Recorder(store)
    await drive_every_method(store)

    assert store_methods() - {"close"} <= called, "drive_every_method misses a Store method"
    # On a Cluster the joined steps run as their parts (keys.SINGLE_REDIS_JOINED).
    expected = set(store.scripts) - (set(SINGLE_REDIS_JOINED) if store.line is None else set())
    assert {step.what for step in recorder.steps} >= expected, "a script was not run"
    assert step_violations(recorder.steps) == []
    assert await key_violations(store) == []


def test_every_owner_names_methods_that_exist() -> None:
    for key_kind, owner in OWNED.items():
        assert owner.emptied_by, key_kind
        for method in owner.emptied_by:
            assert callable(getattr(RedisStore, method, None)), (key_kind, method)


async def test_the_rule_check_catches_what_breaks_it(
    backend_url: str | None, key_prefix: str
) -> None:
    """The checks can fail: a script over two slots, a transaction over two slots, a key given
    in ARGV, a key without TTL or owner. (Its own store: the fixture's check must not see these.)
    """
    store = await open_store(backend_url, prefix=key_prefix, partitions=2)
    recorder = Recorder(store)
    a, b, stray = (store.keys.base + name for name in ("{a}:x", "{b}:y", "{c}:stray"))
    # A Cluster refuses the two cross-slot steps before sending them; they are recorded anyway.
    with contextlib.suppress(rexc.RedisClusterException, rexc.ClusterCrossSlotError):
        await store.scripts["release_lease"](keys=[a, b], args=["t"])
    with contextlib.suppress(rexc.RedisClusterException, rexc.ClusterCrossSlotError):
        async with store.redis.pipeline(transaction=True) as tx:
            tx.set(a, "1", px=60_000)
            tx.set(b, "1", px=60_000)
            await tx.execute()
    await store.scripts["release_lease"](keys=[a], args=[b])
    await store.redis.set(stray, "1")
    try:
        found = step_violations(recorder.steps) + await key_violations(store)
    finally:
        await store.redis.delete(stray)
        await store.close()
    # (A script Redis did not know yet is sent twice: EVALSHA, then EVALSHA again.)
    assert {tuple(f.split(" ")[0:2]) for f in found} == {
        ("release_lease", "spans"),
        ("multi", "spans"),
        ("release_lease", "is"),
        (stray, "has"),
    }


@pytest.mark.parametrize(
    ("keys", "single_redis", "broken"),
    [
        (["hb:v1:{e:7}:claims:1", "hb:v1:{e:evt-1}:claim"], True, False),  # the legacy claim
        (["hb:v1:{e:7}:claims:1", "hb:v1:{e:evt-1}:claim"], False, True),  # never on a Cluster
        (["hb:v1:{e:7}:claims:1", "hb:v1:{s:evt-1}:rec"], True, True),  # no other kind
    ],
)
def test_only_legacy_kinds_may_join_another_slots_step_and_only_on_a_single_redis(
    keys: list[str], single_redis: bool, broken: bool
) -> None:
    assert slot(keys[0]) != slot(keys[1])
    assert bool(step_violations([Step("claim_event", keys, single_redis=single_redis)])) is broken


CLAIMS = ["hb:v1:{e:7}:claims:1", "hb:v1:{e:7}:claims:2"]
PARTITION = ["hb:v1:{p:1}:enq:evt-1", "hb:v1:{p:1}:stream"]


@pytest.mark.parametrize(
    ("what", "keys", "single_redis", "broken"),
    [
        ("admit_event", CLAIMS + PARTITION, True, False),  # the claim's slot, the partition's
        ("admit_event", CLAIMS + PARTITION, False, True),  # never on a Cluster
        ("admit_event", [*CLAIMS, "hb:v1:{e:8}:claims:1", *PARTITION], True, True),  # 2 shards
        ("admit_event", [*CLAIMS, *PARTITION, "hb:v1:{p:2}:stream"], True, True),  # 2 partitions
        ("enqueue_event", CLAIMS + PARTITION, True, True),  # only the joined steps
    ],
)
def test_a_joined_step_keeps_each_part_in_one_slot_and_only_on_a_single_redis(
    what: str, keys: list[str], single_redis: bool, broken: bool
) -> None:
    assert bool(step_violations([Step(what, keys, single_redis=single_redis)])) is broken


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
