"""`handoff-bridge forget SENDER`: erase what the bridge holds about a user (a data-protection
request): the mapping both ways, the handoff record, the outbox, the dead letters of the
user's conversations. 8x8 keeps its own copy of the conversation: erase it there too."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.ids import SenderId
from bridge.ops.common import EXIT_CODES, Exit, Failed, add_json_flag, open_redis, run, settings_for


def add(sub: Any) -> None:
    p = sub.add_parser(
        "forget",
        epilog=EXIT_CODES,
        help="erase what the bridge holds about a user (mapping, record, outbox, dead letters)",
        description="Erase SENDER's data from the bridge's store. Refused while the user's "
        "handoff is live: `handoff-bridge end SENDER` first.",
    )
    p.add_argument("sender", help="the Rasa sender id")
    add_json_flag(p)
    p.set_defaults(func=lambda args: run(forget, args))


async def forget(args: argparse.Namespace) -> tuple[Exit, Any, str]:
    from bridge.store import admin, live_index

    settings = settings_for(needs_8x8=False)
    sender = SenderId(args.sender)
    async with open_redis(settings) as store:
        record = await store.load_handoff(sender)
        if record is not None and live_index.is_live(record.fields):
            raise Failed(Exit.PROBLEM, f"{sender!r} is in a live handoff: end it first "
                         "(handoff-bridge end SENDER)")  # fmt: skip
        gone = await admin.forget(store, sender)
    if not (gone.record or gone.outbox_items or gone.dead_letters or gone.conversations):
        raise Failed(Exit.NOT_FOUND, f"the bridge holds nothing about sender {sender!r}")
    data = {"sender": sender, "record": gone.record, "conversations": list(gone.conversations),
            "outbox_items": gone.outbox_items, "dead_letters": gone.dead_letters}  # fmt: skip
    text = (
        f"forgot {sender}: handoff record {'erased' if gone.record else 'none'}, "
        f"conversation mapping(s) {', '.join(gone.conversations) or 'none'}, "
        f"{gone.outbox_items} outbox item(s), {gone.dead_letters} dead letter(s)"
    )
    return Exit.OK, data, text
