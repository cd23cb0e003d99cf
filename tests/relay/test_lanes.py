"""Lanes (bridge/relay/lanes.py) as tables: which units of a read batch are worked one after
another (one sender's, one unmapped conversation's) and which at the same time."""

from __future__ import annotations

import pytest

from bridge.ids import ConversationId, SenderId
from bridge.relay.lanes import LaneEnd, plan_lanes, round_end
from bridge.relay.runs import MIN_RUN, plan_units

from .test_runs import items


def lanes_of(batch: str, senders: dict[str, str]) -> list[list[tuple[int, ...]]]:
    """The batch's lanes as entry indexes, planned as the consumer plans them: runs for the
    conversations with a known sender, then lanes over those units."""
    given = items(batch)
    known = {ConversationId(c): SenderId(s) for c, s in senders.items()}
    messages = [i.conversation for i in given if i.message]
    ready = {c for c in known if messages.count(c) >= MIN_RUN}
    units = plan_units(given, ready)
    conversations = [i.conversation for i in given]
    return [[units[u] for u in lane] for lane in plan_lanes(units, conversations, known)]


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
def test_the_round_ends_as_its_gravest_lane(ends: list[LaneEnd], end: LaneEnd) -> None:
    assert round_end(ends) == end
