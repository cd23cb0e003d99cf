"""Handed entries: which entries the door just enqueued its consumer may work without reading
the stream back (pure decisions).

At a paced load nearly every entry of a partition is enqueued by the door of the process that
consumes it, which knows the entry it appended (id, event id, payload) and, from the enqueue,
the id of the stream's last entry before it (`Enqueued.after`). Reading the stream back for
that entry is a round trip per event for nothing, so the door hands it to the consumer, which
works it unread when it can prove that everything before it is finished or in its hands, to be
worked in order before it:

- the stream had no entry before it (`after` is ""): every entry before it has left the stream,
  which it does only once finished (acknowledged, held or dead-lettered); or
- the consumer has read `after` (or a later entry) and nothing it read or took since it last
  read from the stream's start has failed: every entry up to its frontier (`read_to`) is
  finished or in a lane, which works its conversation's entries in order (`lanes.py`). A lane
  that fails leaves entries before the frontier in the stream: the consumer then waits for
  every lane to end and starts again from the stream's start (`restarted`).

The handed entries are judged in id order, each one taken counting as read and in hand for the
next (its lane works it after the ones before it of its conversation); the first that cannot be
proved stops them (a later one comes after it). A handed entry is never the only copy (it
stays in the stream until acknowledged), so reading instead, or dropping one, is always safe;
working one twice is not, so an entry read from the stream is no longer handed, and the stream
is read only past the frontier while lanes still have entries in hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.eightbyeight.events import ChatEvent
from bridge.relay.begun import Begun
from bridge.store.base import Enqueued, StreamEntry, StreamId, stream_id


@dataclass(frozen=True, slots=True)
class Progress:
    """What a partition's consumer has done since it started, or since it last started again
    from the stream's start."""

    read_to: StreamId | None = None  # the frontier: the newest entry read or taken (None: none)
    # Nothing read or taken has failed since: everything up to `read_to` is finished or in a
    # lane. False from a lane's failure until the consumer starts again (`restarted`).
    clean: bool = True


def unread(handed: Sequence[Enqueued], read_to: StreamId | None) -> list[Enqueued]:
    """The handed entries not read yet (newer than `read_to`), in id order."""
    out = [h for h in handed if read_to is None or stream_id(h.entry.entry_id) > read_to]
    return sorted(out, key=lambda h: stream_id(h.entry.entry_id))


def take(progress: Progress, handed: Sequence[Enqueued], limit: int) -> list[StreamEntry]:
    """The handed entries (`unread` ones, in id order) to work now without reading the stream,
    at most `limit`; empty: read the stream."""
    # Up to here, everything in the stream is finished or in hand.
    settled = progress.read_to if progress.clean else None
    taken: list[StreamEntry] = []
    for h in handed[:limit]:
        if h.after and (settled is None or stream_id(h.after) > settled):
            break
        taken.append(h.entry)
        settled = stream_id(h.entry.entry_id)
    return taken


def working(progress: Progress, entries: Sequence[StreamEntry]) -> Progress:
    """The progress once `entries` (read or taken, in id order) are in hand: they count as
    read. A read from the stream's start may find older entries only when nothing read before
    is in hand (`restarted` forgets the frontier when something was), so the frontier only
    moves on."""
    if not entries:
        return progress
    last = stream_id(entries[-1].entry_id)
    read_to = last if progress.read_to is None else max(progress.read_to, last)
    return Progress(read_to, progress.clean)


def failed(progress: Progress) -> Progress:
    """A lane failed: entries up to the frontier may be left in the stream, unread again."""
    return Progress(progress.read_to, clean=False)


def restarted() -> Progress:
    """Every lane has ended after a failure: the consumer reads from the stream's start again,
    as a fresh one does."""
    return Progress()


class Intake:
    """One consumer's handed entries and progress: the door hands (`offer`), the consumer takes
    (`take`), or reads the stream and says so (`working`), and says when a lane failed
    (`failed`) and when it starts again from the stream's start (`restarted`). Each consumer
    task has its own, so a restarted consumer never inherits a stale one's."""

    def __init__(self, most: int) -> None:
        self._most = most  # handed entries kept at most: past it, the stream is read for them
        self._handed: list[Enqueued] = []
        # The events the door parsed, by entry id, for handed entries: the payload is their
        # JSON, so the consumer need not parse it again (`taken_events`: the last take's).
        self._events: dict[str, ChatEvent] = {}
        self.taken_events: dict[str, ChatEvent] = {}
        # What the door's enqueue took for a handed entry (`begun.py`), by entry id, until its
        # delivery starts from it: only a first working of the entry may, so a lane's failure
        # forgets them all.
        self._begun: dict[str, Begun] = {}
        self.progress = Progress()
        # The newest entry ever read or taken, kept when the frontier is forgotten
        # (`restarted`): an entry handed after a read found it (on a Cluster the door's enqueue
        # and the consumer's read go over two connections) is in hand or finished already, and
        # must not be taken as new, even once the consumer reads from the stream's start again.
        self._seen: StreamId | None = None
        # The stream may hold what was not handed (a doorbell, recovery's enqueue, the poll):
        # the next look reads it, whatever is handed.
        self.must_read = False

    def offer(
        self, enqueued: Enqueued, event: ChatEvent | None = None, begun: Begun | None = None
    ) -> None:
        if len(self._handed) < self._most:
            self._handed.append(enqueued)
            if event is not None:
                self._events[enqueued.entry.entry_id] = event
        if begun is not None and len(self._begun) < self._most:
            self._begun[enqueued.entry.entry_id] = begun

    def is_unread(self, enqueued: Enqueued) -> bool:
        """Whether this consumer has not read or taken the entry (it is newer than any)."""
        return self._seen is None or stream_id(enqueued.entry.entry_id) > self._seen

    def begun(self, entry_id: str) -> Begun | None:
        """What the door's enqueue took for the entry, if its delivery may start from it."""
        return self._begun.get(entry_id)

    def begin_with(self, entry_id: str, begun: Begun) -> None:
        """The entry's delivery starts from `begun`, in place of what it was offered with."""
        if entry_id in self._begun:
            self._begun[entry_id] = begun

    def started(self, entry_id: str) -> Begun | None:
        """`begun`, given once: the entry's delivery starts from it now."""
        return self._begun.pop(entry_id, None)

    @property
    def frontier(self) -> str | None:
        """The newest entry read or taken, as a stream id (None: none since the start)."""
        read_to = self.progress.read_to
        return None if read_to is None else f"{read_to[0]}-{read_to[1]}"

    @property
    def settled(self) -> str:
        """The frontier when nothing read or taken since the stream's start has failed: every
        entry up to it is finished or in hand ("" for none), as `take` judges."""
        progress = self.progress
        if not progress.clean or progress.read_to is None:
            return ""
        return f"{progress.read_to[0]}-{progress.read_to[1]}"

    @property
    def waiting(self) -> bool:
        """Handed entries not read yet: the consumer takes or reads them, without idling."""
        return bool(self._handed)

    def lone_event(self) -> ChatEvent | None:
        """The event the door parsed of the one entry handed and not taken, if it is the only
        one (whether it may be taken is still `take`'s to say)."""
        if len(self._handed) != 1:
            return None
        return self._events.get(self._handed[0].entry.entry_id)

    def take(self, limit: int) -> list[StreamEntry]:
        self._handed = unread(self._handed, self._seen)
        self.taken_events = {}
        if self.must_read:
            self.must_read = False  # cleared before the read: a mark made during it stays
            self._forget_events()
            return []
        taken = take(self.progress, self._handed, limit)
        del self._handed[: len(taken)]
        events = self._events
        self.taken_events = {
            e.entry_id: events.pop(e.entry_id) for e in taken if e.entry_id in events
        }
        self._forget_events()
        return taken

    def working(self, entries: Sequence[StreamEntry]) -> None:
        self.progress = working(self.progress, entries)
        if entries:
            last = stream_id(entries[-1].entry_id)
            self._seen = last if self._seen is None else max(self._seen, last)
        self._handed = unread(self._handed, self._seen)
        self._forget_events()

    def _forget_events(self) -> None:
        """Keep the parsed events of the entries still handed only (the others were taken, or
        are read from the stream)."""
        if len(self._events) > len(self._handed):
            handed = {h.entry.entry_id for h in self._handed}
            self._events = {k: e for k, e in self._events.items() if k in handed}

    def failed(self) -> None:
        self.progress = failed(self.progress)
        self._begun.clear()  # what was in hand is worked again: claimed again

    def restarted(self) -> None:
        self.progress = restarted()
