"""The stored form of a timer (bridge/store/timers.py): the member an arming is kept as, and the
payload a fired one reads back from, in both the compact form and the earlier JSON one. The
store tests (test_timers.py) check that FIRE_TIMERS writes what `fired_timer` reads."""

from __future__ import annotations

import pytest

from bridge.handoff import TimerFired, TimerKind
from bridge.ids import ConversationId
from bridge.store.timers import KIND_CODES, fired_timer, timer_member

K = TimerKind
SINCE = 1_700_000_000_000
DUE = 1_700_000_600_000


def timer(kind: TimerKind, conversation: str, since: int = SINCE, due: int = DUE) -> TimerFired:
    return TimerFired(kind, ConversationId(conversation), since, due)


# timer -> its member (the payload FIRE_TIMERS writes is `<due>|<member>`)
MEMBERS: dict[str, tuple[TimerFired, str]] = {
    "queue timeout": (timer(K.QUEUE_TIMEOUT, "c1"), f"q|{SINCE}|c1"),
    "queue reminder": (timer(K.QUEUE_REMINDER, "c1"), f"r|{SINCE}|c1"),
    "agent silence": (timer(K.AGENT_SILENCE, "c1"), f"a|{SINCE}|c1"),
    "user silence": (timer(K.USER_SILENCE, "c1"), f"u|{SINCE}|c1"),
    "a bar in the conversation": (timer(K.USER_SILENCE, "a|b|"), f"u|{SINCE}|a|b|"),
    "only bars": (timer(K.USER_SILENCE, "||"), f"u|{SINCE}|||"),
    "unicode": (timer(K.USER_SILENCE, "会话-🙂"), f"u|{SINCE}|会话-🙂"),
    "a brace first": (timer(K.USER_SILENCE, "{x}"), f"u|{SINCE}|{{x}}"),
    "a small since": (timer(K.USER_SILENCE, "c", since=0, due=5), "u|0|c"),
}


@pytest.mark.parametrize(("fired", "member"), [pytest.param(*v, id=k) for k, v in MEMBERS.items()])
def test_a_member_names_the_kind_and_the_handoff_and_reads_back_with_its_due(
    fired: TimerFired, member: str
) -> None:
    assert timer_member(fired) == member
    assert fired_timer(f"{fired.due_ms}|{member}") == fired


def test_every_kind_has_its_own_one_character_code() -> None:
    assert set(KIND_CODES) == set(TimerKind)
    assert len(set(KIND_CODES.values())) == len(TimerKind)
    assert all(len(code) == 1 and "a" <= code <= "z" for code in KIND_CODES.values())


def test_rearming_the_same_kind_of_the_same_handoff_is_the_same_member() -> None:
    assert timer_member(timer(K.USER_SILENCE, "c", due=1)) == timer_member(
        timer(K.USER_SILENCE, "c", due=2)
    )
    others = {timer(K.AGENT_SILENCE, "c"), timer(K.USER_SILENCE, "d"),
              timer(K.USER_SILENCE, "c", since=SINCE + 1)}  # fmt: skip
    assert len({timer_member(t) for t in others | {timer(K.USER_SILENCE, "c")}}) == 4


# The earlier version's member and payload: the timer's JSON.
LEGACY: dict[str, tuple[str, TimerFired]] = {
    "plain": (
        '{"timer":"user_silence","conversation_id":"c1","since_ms":1700000000000,'
        '"due_ms":1700000600000}',
        timer(K.USER_SILENCE, "c1"),
    ),
    "escaped unicode and a bar": (
        '{"timer":"queue_timeout","conversation_id":"a|\\u4f1a\\ud83d\\ude42",'
        '"since_ms":1700000000000,"due_ms":1700000600000}',
        timer(K.QUEUE_TIMEOUT, "a|会🙂"),
    ),
}


@pytest.mark.parametrize(("payload", "fired"), [pytest.param(*v, id=k) for k, v in LEGACY.items()])
def test_a_payload_of_the_earlier_version_reads_as_before(payload: str, fired: TimerFired) -> None:
    assert fired_timer(payload) == fired


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "timer-a",
        f"{DUE}|u|{SINCE}",  # no conversation
        f"{DUE}|u|{SINCE}|",  # an empty one
        f"{DUE}|x|{SINCE}|c1",  # unknown kind
        f"{DUE}|user_silence|{SINCE}|c1",
        f"|u|{SINCE}|c1",
        f"{DUE}|u||c1",
        f"-{DUE}|u|{SINCE}|c1",
        f"{DUE}|u| {SINCE}|c1",
        f"1_700|u|{SINCE}|c1",
        f"1.7e12|u|{SINCE}|c1",
        f"{DUE}|u|١٢٣|c1",  # digits, but not ASCII ones
        '{"kind": "agent_message"}',
        "{not json",
    ],
)
def test_anything_else_is_refused(payload: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        fired_timer(payload)
