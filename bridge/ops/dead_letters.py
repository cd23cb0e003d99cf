"""`handoff-bridge dead-letters list|show|replay|purge`: what the relay gave up on.

A dead letter's id is `<partition>:<stream id>`. Replaying puts the original event (same 8x8
event id, same payload) back at the end of its conversation's partition stream, not through the
webhook's claim: the relay then looks for the event's marker in the tracker before pushing, so
what reached the user before it was given up is not shown twice.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

from bridge.eightbyeight.events import ChatEvent
from bridge.ops.common import (
    EXIT_CODES,
    Exit,
    Failed,
    add_json_flag,
    ago,
    iso,
    open_redis,
    parse_duration,
    run,
    settings_for,
    table,
)

if TYPE_CHECKING:
    from bridge.store.base import DeadLetter
    from bridge.store.redis_store import RedisStore

_ALL = 1_000_000  # "every dead letter": far more than trimming by age lets accumulate


def add(sub: Any) -> None:
    p = sub.add_parser(
        "dead-letters",
        epilog=EXIT_CODES,
        help="list, show, replay or purge the events the relay gave up on",
        description="Events the relay could not deliver (after RELAY_MAX_ATTEMPTS or "
        "RELAY_MAX_AGE_S), kept for an operator. IDs look like 3:1732912345678-0.",
    )
    verbs = p.add_subparsers(dest="verb", required=True)
    ls = verbs.add_parser("list", help="every dead letter, oldest first per partition")
    ls.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    show = verbs.add_parser("show", help="one dead letter, with its event")
    show.add_argument("id")
    replay = verbs.add_parser("replay", help="deliver a dead letter again, as the original event")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", help="the dead letter to replay")
    which.add_argument("--all", action="store_true", help="replay every dead letter")
    purge = verbs.add_parser("purge", help="delete dead letters older than a duration")
    purge.add_argument("--older-than", required=True, type=parse_duration, metavar="D",
                       help="e.g. 30d, 12h, 15m")  # fmt: skip
    for verb in (ls, show, replay, purge):
        add_json_flag(verb)
    p.set_defaults(func=lambda args: run(dead_letters, args))


async def dead_letters(args: argparse.Namespace) -> tuple[Exit, Any, str]:
    settings = settings_for(needs_8x8=False)
    async with open_redis(settings) as store:
        if args.verb == "list":
            return await _list(store, args.limit)
        if args.verb == "show":
            return _show(await _find(store, args.id))
        if args.verb == "replay":
            return await _replay(store, args.id, every=args.all)
        from bridge.store import admin

        removed = await admin.purge_dead_letters(store, args.older_than)
        return Exit.OK, {"purged": removed}, f"purged {removed} dead letter(s)"


def _view(d: DeadLetter) -> dict[str, Any]:
    event = _event(d.entry.payload)
    return {
        "id": f"{d.partition}:{d.dead_id}", "reason": d.reason,
        "parked": iso(int(d.dead_id.split("-")[0])), "accepted": iso(d.entry.accepted_ms),
        "event_id": d.entry.event_id, "kind": event.kind.value if event else None,
        "conversation": event.conversation_id if event else None,
    }  # fmt: skip


def _event(payload: str) -> ChatEvent | None:
    try:
        return ChatEvent.from_json(payload)
    except (ValueError, TypeError, KeyError):
        return None


async def _list(store: RedisStore, limit: int) -> tuple[Exit, Any, str]:
    letters = [_view(d) for d in await store.list_dead_letters(limit)]
    now = int(time.time() * 1000)
    rows = [
        (v["id"], v["reason"], v["kind"], v["conversation"], v["event_id"],
         ago(int(v["id"].split(":")[1].split("-")[0]), now))
        for v in letters
    ]  # fmt: skip
    text = table(["ID", "REASON", "KIND", "CONVERSATION", "EVENT ID", "AGE"], rows)
    return Exit.OK, letters, f"{len(letters)} dead letter(s)\n{text}"


async def _find(store: RedisStore, ident: str) -> DeadLetter:
    from bridge.store import admin

    partition, _, dead_id = ident.partition(":")
    found = await admin.dead_letter(store, int(partition), dead_id) if partition.isdigit() else None
    if found is None:
        raise Failed(Exit.NOT_FOUND, f"no dead letter {ident!r} (ids look like 3:1732912345678-0)")
    return found


def _show(d: DeadLetter) -> tuple[Exit, Any, str]:
    view = {**_view(d), "event": json.loads(d.entry.payload)}
    lines = [f"{k}: {v}" for k, v in view.items() if k != "event"]
    return Exit.OK, view, "\n".join([*lines, "event:", json.dumps(view["event"], indent=2)])


async def _replay(store: RedisStore, ident: str | None, *, every: bool) -> tuple[Exit, Any, str]:
    targets = await store.list_dead_letters(_ALL) if every else [await _find(store, ident or "")]
    replayed = [
        f"{d.partition}:{d.dead_id}"
        for d in targets
        if await store.replay_dead_letter(d.partition, d.dead_id)
    ]
    return (
        Exit.OK,
        {"replayed": replayed},
        f"replayed {len(replayed)} dead letter(s) into the relay",
    )
