"""Lanes (bridge/relay/lanes.py) as tables: which units of a read batch are worked one after
another (one sender's, one unmapped conversation's) and which at the same time, and when a unit
must wait for a running lane to end before it joins its own."""

from __future__ import annotations

import pytest

from bridge.ids import ConversationId, SenderId
from bridge.relay.lanes import Key, LaneEnd, lane_keys, round_end, waits
from bridge.relay.runs import MIN_RUN, plan_units

from .test_runs import items


def lanes_of(batch: str, senders: dict[str, str]) -> list[list[tuple[int, ...]]]:
    """The batch's lanes as entry indexes, planned as the consumer plans them: runs for the
    conversations with a known sender, then each unit's lane key; lanes in the order of their
    first unit, each in stream order."""
    given = items(batch)
    known = {ConversationId(c): SenderId(s) for c, s in senders.items()}
    messages = [i.conversation for i in given if i.message]
    ready = {c for c in known if messages.count(c) >= MIN_RUN}
    units = plan_units(given, ready)
    conversations = [i.conversation for i in given]
    entry_ids = [f"{i}-0" for i in range(len(given))]
    lanes: dict[Key, list[tuple[int, ...]]] = {}
    for unit, key in zip(units, lane_keys(units, conversations, known, entry_ids), strict=True):
        lanes.setdefault(key, []).append(unit)
    return list(lanes.values())


@pytest.mark.parametrize(
    ("batch", "senders", "lanes"),
    [
        # conversations of different senders: a lane each, each in stream order
        ("cx dx cx dx", {"c": "ada", "d": "bob"}, [[(0,), (2,)], [(1,), (3,)]]),
        # two conversations of one sender share its lane, in stream order
        ("cx dx ex cx", {"c": "ada", "d": "ada", "e": "bob"}, [[(0,), (1,), (3,)], [(2,)]]),
        # a sender unknown: the conversation's own lane (held in order there)
        ("cx dx cx dx", {"c": "ada"}, [[(0,), (2,)], [(1,), (3,)]]),
        ("cm dm cm", {}, [[(0,), (2,)], [(1,)]]),
        # a conversation's lane never merges with a sender's of the same name
        ("cx dx", {"c": "d"}, [[(0,)], [(1,)]]),
        # an entry that cannot be read: a lane of its own, each of them
        ("? cx ? cx", {"c": "ada"}, [[(0,)], [(1,), (3,)], [(2,)]]),
        # a run is one unit of its conversation's lane, what follows it stays behind it
        ("cm dm cm cx cm", {"c": "ada", "d": "bob"}, [[(0, 2), (3,), (4,)], [(1,)]]),
        # runs of two conversations of one sender: one lane
        ("cm dm cm dm", {"c": "ada", "d": "ada"}, [[(0, 2), (1, 3)]]),
        ("", {"c": "ada"}, []),
    ],
)
def test_a_read_batch_is_worked_in_lanes_one_per_sender(
    batch: str, senders: dict[str, str], lanes: list[list[tuple[int, ...]]]
) -> None:
    assert lanes_of(batch, senders) == lanes


@pytest.mark.parametrize(
    ("batch", "senders"),
    [
        ("cm dm cm dx dm em cx cm", {"c": "ada", "d": "bob", "e": "ada"}),
        ("dx cm ? dm cm ? em cm", {"d": "bob"}),
        ("cm cm dm dx dm em em", {"c": "ada", "d": "ada", "e": "ada"}),
    ],
)
def test_every_entry_is_worked_once_and_a_conversation_in_one_lane_in_order(
    batch: str, senders: dict[str, str]
) -> None:
    given = items(batch)
    lanes = [[i for unit in lane for i in unit] for lane in lanes_of(batch, senders)]
    assert sorted(i for lane in lanes for i in lane) == list(range(len(given)))
    for lane in lanes:
        assert lane == sorted(lane)
    for c in {i.conversation for i in given if i.conversation is not None}:
        assert sum(any(given[i].conversation == c for i in lane) for lane in lanes) == 1


def key(spec: str) -> Key:
    """ "s:ada" a sender's lane, "c:x" an unmapped conversation's."""
    kind, _, name = spec.partition(":")
    return ("sender" if kind == "s" else "conversation", name)


def units(spec: str) -> tuple[list[Key], list[ConversationId | None]]:
    """ "x>s:ada y>c:y ?": each unit's conversation and lane key ("?": an unread entry's)."""
    keys: list[Key] = []
    conversations: list[ConversationId | None] = []
    for i, part in enumerate(spec.split()):
        if part == "?":
            keys.append(("unread", f"{i}-0"))
            conversations.append(None)
        else:
            conversation, _, lane = part.partition(">")
            keys.append(key(lane))
            conversations.append(ConversationId(conversation))
    return keys, conversations


@pytest.mark.parametrize(
    ("batch", "in_flight", "wait"),
    [
        # nothing in flight: every unit joins its lane at once
        ("x>s:ada y>s:bob x>s:ada", {}, [None, None, None]),
        # its conversation in flight in its own lane: joins it behind what it has
        ("x>s:ada", {"x": "s:ada"}, [None]),
        # another conversation of its sender in flight: the same lane, no wait
        ("x>s:ada", {"y": "s:ada"}, [None]),
        # other lanes in flight do not concern it
        ("x>s:ada", {"y": "s:bob", "z": "c:z"}, [None]),
        # its sender became known while its conversation is in flight in the conversation's
        # lane: it waits for that lane to end (its entries there go first)
        ("x>s:ada", {"x": "c:x"}, [key("c:x")]),
        # it got held while in flight in its sender's lane: waits for that lane
        ("x>c:x", {"x": "s:ada"}, [key("s:ada")]),
        # one wait per changed conversation: the lane waited for counts as ended after it
        ("x>s:ada x>s:ada", {"x": "c:x"}, [key("c:x"), None]),
        ("x>s:ada y>s:ada", {"x": "c:x", "y": "c:x"}, [key("c:x"), None]),
        # a unit of this batch dispatched to a lane counts as in flight there for the next
        ("x>c:x x>s:ada", {}, [None, key("c:x")]),
        ("x>s:ada y>s:bob x>c:x", {}, [None, None, key("s:ada")]),
        # an entry that cannot be read belongs to no conversation: never waits
        ("? x>s:ada ?", {"x": "c:x"}, [None, key("c:x"), None]),
        ("", {"x": "c:x"}, []),
    ],
)
def test_a_unit_whose_conversation_is_in_another_running_lane_waits_for_it(
    batch: str, in_flight: dict[str, str], wait: list[Key | None]
) -> None:
    keys, conversations = units(batch)
    flight = {ConversationId(c): key(k) for c, k in in_flight.items()}
    assert waits(keys, conversations, flight) == wait


@pytest.mark.parametrize(
    ("ends", "end"),
    [
        ([], LaneEnd.DONE),
        ([LaneEnd.DONE, LaneEnd.DONE], LaneEnd.DONE),
        ([LaneEnd.DONE, LaneEnd.STOPPED], LaneEnd.STOPPED),
        ([LaneEnd.LEASE, LaneEnd.STOPPED, LaneEnd.DONE], LaneEnd.LEASE),
        ([LaneEnd.DONE, LaneEnd.LOST, LaneEnd.LEASE], LaneEnd.LOST),
    ],
)
def test_lanes_that_ended_come_to_the_gravest_end(ends: list[LaneEnd], end: LaneEnd) -> None:
    assert round_end(ends) == end
