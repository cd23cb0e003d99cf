"""How an armed timer is kept in its partition's timer set, and how a fired one reads back.

Armed: the member `<kind code>|<since_ms>|<conversation>`, scored by the due time (epoch ms).
It names the kind and the handoff, not the arming, so arming the same kind again for the same
handoff moves the one member (ZADD) instead of adding one per arming; the record's `timers`
field names the live arming (`Handoff.due`). The conversation comes last: it may hold any
character, `|` included.

Fired (`FIRE_TIMERS` in scripts.py): the stream entry's payload is `<due_ms>|<member>`, so it
carries the arming it was (held, dead-lettered and replayed entries included), and its event
id `<TIMER_EVENT_PREFIX><due_ms>|<kind code>|<since_ms>` is unique per arming of a sender's
handoffs (Rasa markers are built from it).

Members written by earlier versions are the timer's JSON (a leading `{`); they fire verbatim
(payload = member) and read back as before.
"""

from __future__ import annotations

import json
from typing import Final

from bridge.handoff import TimerFired, TimerKind
from bridge.ids import ConversationId

# One character each: stored in every member. Never reuse a code for another kind.
KIND_CODES: Final[dict[TimerKind, str]] = {
    TimerKind.QUEUE_TIMEOUT: "q",
    TimerKind.QUEUE_REMINDER: "r",
    TimerKind.AGENT_SILENCE: "a",
    TimerKind.USER_SILENCE: "u",
}
_KINDS: Final = {code: kind for kind, code in KIND_CODES.items()}


def timer_member(timer: TimerFired) -> str:
    """The timer set's member for `timer` (its due time is the score)."""
    return f"{KIND_CODES[timer.kind]}|{timer.since_ms}|{timer.conversation_id}"


def fired_timer(payload: str) -> TimerFired:
    """The timer a fired stream entry carries, in either form. Raises ValueError (or
    KeyError/TypeError for a malformed JSON one) for anything else."""
    if payload.startswith("{"):
        return _from_json(payload)
    due, code, since, conversation = _split(payload)
    kind = _KINDS.get(code)
    if kind is None or not conversation:
        raise ValueError(f"not a fired timer: {payload!r}")
    return TimerFired(kind, ConversationId(conversation), _ms(since), _ms(due))


def _split(payload: str) -> tuple[str, str, str, str]:
    parts = payload.split("|", 3)
    if len(parts) != 4:
        raise ValueError(f"not a fired timer: {payload!r}")
    return parts[0], parts[1], parts[2], parts[3]


def _ms(text: str) -> int:
    # Plain ASCII digits only: int() would also take signs, spaces, underscores, other scripts.
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"not a time in ms: {text!r}")
    return int(text)


def _from_json(payload: str) -> TimerFired:
    """The earlier form: `{"timer":..., "conversation_id":..., "since_ms":..., "due_ms":...}`."""
    d = json.loads(payload)
    return TimerFired(
        TimerKind(d["timer"]),
        ConversationId(str(d["conversation_id"])),
        int(d["since_ms"]),
        int(d["due_ms"]),
    )
