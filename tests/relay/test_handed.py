"""Handed entries (bridge/relay/handed.py) as tables: which entries the door appended its
consumer works without reading the stream back, and when it must read instead."""

from __future__ import annotations

import pytest

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.ids import ConversationId, EventId
from bridge.relay.handed import (
    Intake,
    Progress,
    failed,
    restarted,
    stream_id,
    take,
    unread,
    working,
)
from bridge.store.base import Enqueued, StreamEntry


def entry(entry_id: str) -> StreamEntry:
    return StreamEntry(entry_id, EventId(f"e{entry_id}"), "{}", claimed=True)


def handed(spec: str) -> list[Enqueued]:
    """ "6-0<5-0 7-0<6-0 8-0<": each entry's id and, after "<", the last entry before it."""
    out = []
    for part in spec.split():
        entry_id, _, after = part.partition("<")
        out.append(Enqueued(entry(entry_id), after))
    return out


def ids(entries: list[StreamEntry]) -> list[str]:
    return [e.entry_id for e in entries]


FRESH = Progress()  # a consumer that has read nothing yet (or starts again from the start)
# Read up to 5-0, and nothing failed since: all of it is finished or in a lane, in order.
CLEAN_AT_5 = Progress((5, 0), clean=True)
DIRTY_AT_5 = Progress((5, 0), clean=False)  # read up to 5-0, then a lane failed


@pytest.mark.parametrize(
    ("progress", "spec", "limit", "taken"),
    [
        # the stream had nothing before it: taken whatever the consumer knows
        (FRESH, "6-0<", 64, ["6-0"]),
        (DIRTY_AT_5, "6-0<", 64, ["6-0"]),
        # an entry before it that a fresh consumer has not read: read the stream
        (FRESH, "6-0<4-0", 64, []),
        # everything before it read and finished
        (CLEAN_AT_5, "6-0<5-0", 64, ["6-0"]),
        (CLEAN_AT_5, "6-0<3-0", 64, ["6-0"]),
        # read, but a lane failed since: it may still be in the stream, read it again first
        (DIRTY_AT_5, "6-0<5-0", 64, []),
        # an entry between (another process's, a timer): read the stream
        (CLEAN_AT_5, "6-0<5-1", 64, []),
        # a chain: each one taken counts as read and finished for the next
        (CLEAN_AT_5, "6-0<5-0 7-0<6-0 8-0<7-0", 64, ["6-0", "7-0", "8-0"]),
        (FRESH, "6-0< 7-0<6-0", 64, ["6-0", "7-0"]),
        (DIRTY_AT_5, "6-0< 7-0<6-0", 64, ["6-0", "7-0"]),
        # the chain stops at the first that cannot be proved: everything after it comes after
        (CLEAN_AT_5, "6-0<5-0 8-0<7-0 9-0<8-0", 64, ["6-0"]),
        (CLEAN_AT_5, "6-0<5-5 7-0<6-0", 64, []),
        # at most `limit`
        (CLEAN_AT_5, "6-0<5-0 7-0<6-0 8-0<7-0", 2, ["6-0", "7-0"]),
        (CLEAN_AT_5, "", 64, []),
    ],
)
def test_what_the_consumer_takes_without_reading(
    progress: Progress, spec: str, limit: int, taken: list[str]
) -> None:
    assert ids(take(progress, handed(spec), limit)) == taken


@pytest.mark.parametrize(
    ("spec", "read_to", "left"),
    [
        # what a read (or a take) covered is no longer handed: worked once
        ("4-0< 5-0<4-0 6-0<5-0", (5, 0), ["6-0"]),
        ("6-0<5-0 4-0<", None, ["4-0", "6-0"]),  # in id order, as the stream orders them
        ("4-0<", (4, 0), []),
        ("10-0< 9-5<", (9, 9), ["10-0"]),  # ids order as numbers, not as text
    ],
)
def test_handed_entries_left_after_a_read(
    spec: str, read_to: tuple[int, int] | None, left: list[str]
) -> None:
    assert [h.entry.entry_id for h in unread(handed(spec), read_to)] == left


def test_stream_ids_order_as_redis_orders_them() -> None:
    assert stream_id("1700000000000-0") < stream_id("1700000000000-10")
    assert stream_id("999-9") < stream_id("1000-0")
    assert stream_id("5") == (5, 0)


@pytest.mark.parametrize(
    ("progress", "entries", "after"),
    [
        (FRESH, ["5-0", "6-0"], Progress((6, 0))),
        (CLEAN_AT_5, [], CLEAN_AT_5),  # an empty read
        # in hand, not finished: still clean (its lanes work it in order)
        (CLEAN_AT_5, ["7-0"], Progress((7, 0), clean=True)),
        (DIRTY_AT_5, ["7-0"], Progress((7, 0), clean=False)),
        # what was read before is not forgotten by a read that found older entries again
        (Progress((9, 0)), ["7-0"], Progress((9, 0))),
    ],
)
def test_the_frontier_moves_on_with_what_is_read_or_taken(
    progress: Progress, entries: list[str], after: Progress
) -> None:
    assert working(progress, [entry(e) for e in entries]) == after


def test_after_a_lane_failed_nothing_is_taken_past_the_start_until_read_again() -> None:
    chain = handed("6-0<5-0 7-0<6-0")
    assert ids(take(CLEAN_AT_5, chain, 64)) == ["6-0", "7-0"]
    assert failed(CLEAN_AT_5) == DIRTY_AT_5
    assert take(failed(CLEAN_AT_5), chain, 64) == []  # 5-0 may be back in the stream's hands
    assert restarted() == FRESH  # every lane ended: read from the stream's start again
    assert take(restarted(), chain, 64) == []
    assert ids(take(working(restarted(), [entry("5-0")]), chain, 64)) == ["6-0", "7-0"]


def test_an_intake_takes_in_order_and_never_twice() -> None:
    intake = Intake(most=3)
    for h in handed("7-0<6-0 6-0< 8-0<7-0 9-0<8-0"):  # the last is over `most`: left to a read
        intake.offer(h)
    assert intake.waiting
    taken = intake.take(64)
    assert ids(taken) == ["6-0", "7-0", "8-0"]
    intake.working(taken)
    assert not intake.waiting and intake.take(64) == []
    assert intake.progress == Progress((8, 0), clean=True)
    assert intake.frontier == "8-0"  # what a read while lanes work starts after


def test_an_intake_forgets_what_a_read_covered() -> None:
    intake = Intake(most=8)
    for h in handed("6-0<5-0 7-0<6-0"):
        intake.offer(h)
    assert intake.take(64) == []  # 5-0 not read yet: read the stream
    intake.working([entry("5-0"), entry("6-0")])  # the read found 5-0 and 6-0
    assert ids(intake.take(64)) == ["7-0"]  # 6-0 was read: only 7-0 is taken


def test_an_intake_whose_lane_failed_reads_from_the_start_and_takes_nothing_twice() -> None:
    """A lane failed with 5-0 and 6-0 in hand: once every lane has ended the consumer reads
    from the stream's start; what it took before is not handed any more, what it did not is
    taken again only once the read has covered what comes before it."""
    intake = Intake(most=8)
    for h in handed("5-0< 6-0<5-0 7-0<6-0"):
        intake.offer(h)
    assert ids(intake.take(2)) == ["5-0", "6-0"]
    intake.working([entry("5-0"), entry("6-0")])
    intake.failed()
    assert intake.take(64) == []  # 7-0 comes after what the failed lane may have left
    intake.restarted()
    assert intake.frontier is None  # the next read is from the start
    assert intake.take(64) == []
    intake.working([entry("6-0")])  # 5-0 was finished, 6-0 left: the read finds it again
    assert ids(intake.take(64)) == ["7-0"] and not intake.waiting


@pytest.mark.parametrize("after", ["", "4-0"])
def test_an_entry_handed_after_a_read_found_it_is_never_taken_after_a_restart(after: str) -> None:
    """On a Cluster the door's enqueue and the consumer's read go over two connections: a read
    can find an entry before the door hands it. If a lane fails before the consumer looks at
    what is handed, it forgets its frontier. The entry, in hand or finished already, is not
    handed any more: with nothing before it in the stream it would be taken, and worked twice;
    after another entry, finished too, no read from the start would cover it, and the consumer
    would read again and again without ever idling."""
    intake = Intake(most=8)
    intake.working([entry("4-0"), entry("5-0")])  # read from the stream, 5-0 not handed yet
    intake.failed()
    intake.restarted()
    intake.offer(Enqueued(entry("5-0"), after))  # the door hands it now
    assert intake.take(64) == []
    intake.working([])  # the read from the start: both were finished meanwhile
    assert not intake.waiting


def test_an_intake_told_to_read_takes_nothing_once() -> None:
    """A kick (a doorbell, recovery, the poll) says the stream may hold what was not handed:
    the next look reads it, then taking goes on."""
    intake = Intake(most=8)
    intake.offer(handed("6-0<")[0])
    intake.must_read = True
    assert intake.take(64) == []
    assert not intake.must_read  # cleared before the read: a kick during it marks it again
    assert ids(intake.take(64)) == ["6-0"]


def parsed(entry_id: str) -> ChatEvent:
    return ChatEvent(EventKind.AGENT_MESSAGE, "TEXT", ConversationId("c"), text=entry_id)


def test_an_intake_gives_the_door_parsed_events_of_what_it_takes_and_forgets_the_rest() -> None:
    """The door hands the event it parsed with the entry: a consumer that takes the entry need
    not parse its payload again. Entries read from the stream instead are parsed from there,
    and their handed events are not kept."""
    intake = Intake(most=8)
    for h in handed("6-0<5-0 7-0<6-0 8-0<7-0"):
        intake.offer(h, parsed(h.entry.entry_id))
    assert intake.take(64) == [] and intake.taken_events == {}  # 5-0 unread: read the stream
    intake.working([entry("5-0"), entry("6-0")])  # the read found 5-0 and 6-0
    assert ids(intake.take(1)) == ["7-0"]
    assert intake.taken_events == {"7-0": parsed("7-0")}
    assert intake._events.keys() == {"8-0"}  # 6-0's (read) forgotten, 8-0's still handed
    intake.working([entry("7-0")])
    intake.offer(handed("9-0<8-0")[0])  # handed without its event: parsed from the payload
    assert ids(intake.take(64)) == ["8-0", "9-0"]
    assert intake.taken_events == {"8-0": parsed("8-0")} and intake._events == {}
