"""`handoff-bridge end SENDER`: end a stuck handoff on both sides and tell the user.

The bridge's record goes back to the bot and the user leaves the 8x8 interaction (or the leave
waits in the outbox, in order, while 8x8 is down: `serve` sends it). Then Rasa is told with the
same `EXTERNAL_agent_left` trigger an agent's leave sends, so the bot says it is back and its
`handoff_active` slot clears.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from bridge.errors import UpstreamError
from bridge.handoff import INTENT_AGENT_LEFT
from bridge.ids import SenderId
from bridge.ops.common import EXIT_CODES, Exit, Failed, add_json_flag, open_redis, run, settings_for


def add(sub: Any) -> None:
    p = sub.add_parser(
        "end",
        epilog=EXIT_CODES,
        help="end a stuck handoff on both sides (8x8 and the bot), telling the user",
        description="End SENDER's live handoff: leave the 8x8 interaction, hand the user back "
        "to the bot, and let the bot tell them (EXTERNAL_agent_left).",
    )
    p.add_argument("sender", help="the Rasa sender id")
    add_json_flag(p)
    p.set_defaults(func=lambda args: run(end, args))


async def end(args: argparse.Namespace) -> tuple[Exit, Any, str]:
    from bridge.eightbyeight import make_client
    from bridge.rasa.client import RasaClient
    from bridge.service import HandoffService

    settings = settings_for(needs_8x8=True)
    sender = SenderId(args.sender)
    async with open_redis(settings) as store:
        chat = make_client(settings.eightbyeight())
        rasa = RasaClient(settings.rasa_url, token=settings.rasa_token,
                          output_channel=settings.rasa_output_channel)  # fmt: skip
        try:
            service = HandoffService(store, chat)
            if not (await service.handoff(sender)).active:
                raise Failed(Exit.NOT_FOUND, f"no live handoff for sender {sender!r}")
            result = await service.end(sender)
            leave_waits = await store.outbox_peek(sender) is not None
            told = await _tell(rasa, sender)
        finally:
            await chat.close()
            await rasa.close()
    data = {"sender": sender, "conversation": result.conversation_id, "ended": True,
            "leave_waiting_in_outbox": leave_waits, "user_told": told is None, "rasa_error": told}  # fmt: skip
    lines = [f"ended the handoff of {sender} (conversation {result.conversation_id})"]
    lines.append(
        "8x8 unreachable: the leave waits in the outbox; serve sends it when 8x8 is back"
        if leave_waits else "left the 8x8 interaction"
    )  # fmt: skip
    lines.append("the user was told (EXTERNAL_agent_left)" if told is None else
                 f"the user was NOT told: Rasa: {told}; the bot answers again all the same")  # fmt: skip
    return (Exit.OK if told is None else Exit.PROBLEM), data, "\n".join(lines)


async def _tell(rasa: Any, sender: SenderId) -> str | None:
    """None when Rasa took the trigger, else why not."""
    try:
        await rasa.trigger_intent(sender, INTENT_AGENT_LEFT, {}, marker=f"ops-end:{uuid.uuid4()}")
    except UpstreamError as exc:
        return str(exc)
    return None
