"""A partition consumer's running lanes: FIFO queues of units of work, one per lane key
(`lanes.py`), that outlive the batch that started them.

The consumer dispatches each unit it reads or takes to the running lane of its key (behind what
that lane already has) or to a new lane, and goes on reading while lanes work: an entry read
after a slow push waits only for what its own lane has before it, not for every lane of the
batch read before it. A lane works its units one after another and ends when its queue is
empty; it is forgotten in the same step, so a unit is never appended to a lane that will not
work it. A lane that ends otherwise (`LaneEnd` other than DONE, an exception, a cancellation)
drops what it had left, which stays in the stream, and says so: the consumer then dispatches
nothing more, waits for every lane to end (`settle`) and reads again from the stream's start.

Bookkeeping only: what working a unit means, and when to dispatch, is the consumer's.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Generic, TypeVar

from bridge.ids import ConversationId
from bridge.relay.lanes import Key, LaneEnd, round_end

U = TypeVar("U")


class _Lane(Generic[U]):
    __slots__ = ("conversations", "key", "queue", "task")

    def __init__(self, key: Key) -> None:
        self.key = key
        # The units not begun yet, each with its number of entries.
        self.queue: deque[tuple[U, int]] = deque()
        self.conversations: set[ConversationId] = set()  # of every unit it was given
        self.task: asyncio.Task[None] | None = None


class Pipeline(Generic[U]):
    """The running lanes of one consumer. `work` works one unit and says whether the lane goes
    on (DONE) or stops; `wake` is called when a lane stops otherwise (the consumer may be
    waiting for new entries: it must see the failure instead); `join` gives the one unit that
    works a unit waiting in a lane and the one dispatched right behind it, if they may go as
    one (None: each on its own)."""

    def __init__(
        self, work: Callable[[U], Awaitable[LaneEnd]], *, wake: Callable[[], None], name: str,
        join: Callable[[U, U], U | None] = lambda _queued, _behind: None,
    ) -> None:  # fmt: skip
        self._work = work
        self._wake = wake
        self._join = join
        self._name = name
        self._numbers = itertools.count()
        self._lanes: dict[Key, _Lane[U]] = {}
        # Each conversation of the running lanes, with its lane's key: kept as lanes start and
        # end, since every dispatch looks at it (a conversation is in one running lane at most).
        self._where: dict[ConversationId, Key] = {}
        self._ends: list[LaneEnd] = []  # of the lanes that stopped short since the last settle
        self._errors: list[Exception] = []  # raised by lanes since the last settle
        self._moved = asyncio.Event()  # a unit finished, or a lane ended
        self.in_hand = 0  # entries dispatched and not finished yet
        # The lanes run in the context of the task that made the pipeline (the consumer's),
        # whoever dispatches to them.
        self._context = contextvars.copy_context()

    @property
    def busy(self) -> bool:
        """Some lane is running: entries up to the consumer's frontier may be in hand."""
        return bool(self._lanes)

    @property
    def failed(self) -> bool:
        """A lane stopped short since the last settle: dispatch nothing more, settle."""
        return bool(self._ends or self._errors)

    def running(self, key: Key) -> bool:
        """Whether the lane of `key` is running (has a unit begun or queued)."""
        return key in self._lanes

    def in_flight(self) -> Mapping[ConversationId, Key]:
        """Each conversation of the running lanes, with its lane's key (`lanes.waits`)."""
        return self._where

    def dispatch(self, key: Key, conversation: ConversationId | None, unit: U, size: int) -> None:
        """Append a unit of `size` entries to its lane, started if not running (or join it to
        the unit last queued there, not begun yet)."""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key)
            lane.task = asyncio.create_task(
                self._run(lane), name=f"{self._name}-lane{next(self._numbers)}",
                context=self._context.copy(),
            )  # fmt: skip
        joined = self._join(lane.queue[-1][0], unit) if lane.queue else None
        if joined is None:
            lane.queue.append((unit, size))
        else:
            lane.queue[-1] = (joined, lane.queue[-1][1] + size)
        if conversation is not None:
            lane.conversations.add(conversation)
            self._where[conversation] = key
        self.in_hand += size

    async def lane_ended(self, key: Key) -> None:
        """Until the running lane of `key` (if any) has ended."""
        lane = self._lanes.get(key)
        if lane is not None and lane.task is not None:
            await asyncio.wait({lane.task})

    async def room(self, most: int) -> None:
        """Until fewer than `most` entries are in hand, or a lane stopped short."""
        while self.in_hand >= most and not self.failed:
            self._moved.clear()
            await self._moved.wait()

    async def quiet(self) -> None:
        """Until every lane has ended (the caller dispatches nothing meanwhile)."""
        while tasks := {
            lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()
        }:
            await asyncio.wait(tasks)

    async def settle(self) -> tuple[LaneEnd, Exception | None]:
        """Until every lane has ended; then what the lanes that stopped short since the last
        settle come to (`lanes.round_end`), and the first error one raised."""
        await self.quiet()
        end, error = round_end(self._ends), (self._errors[0] if self._errors else None)
        self._ends.clear()
        self._errors.clear()
        return end, error

    async def cancel(self) -> None:
        """Cancel every lane and wait for each to end (the consumer is cancelled: it ends
        after its lanes, as when it gathered them). The pipeline is not used again."""
        tasks = {lane.task for lane in self._lanes.values() if lane.task is not None}
        for task in tasks:
            task.cancel()
        self._lanes.clear()
        self._where.clear()
        if tasks:
            await asyncio.wait(tasks)

    async def _run(self, lane: _Lane[U]) -> None:
        end: LaneEnd | None = LaneEnd.STOPPED  # unless it gets further: cancelled
        try:
            end = await self._units(lane)
        except Exception as exc:  # the consumer raises it once every lane has ended
            self._errors.append(exc)
            end = None
        finally:
            # In the step that saw its queue empty (or stopped): a unit dispatched from now on
            # starts a new lane.
            if self._lanes.get(lane.key) is lane:
                del self._lanes[lane.key]
                for conversation in lane.conversations:
                    if self._where.get(conversation) == lane.key:
                        del self._where[conversation]
            self.in_hand -= sum(size for _, size in lane.queue)
            lane.queue.clear()
            if end is not LaneEnd.DONE:
                if end is not None:
                    self._ends.append(end)
                self._wake()
            self._moved.set()

    async def _units(self, lane: _Lane[U]) -> LaneEnd:
        while lane.queue:
            unit, size = lane.queue.popleft()  # begun: nothing joins it any more
            try:
                end = await self._work(unit)
            finally:
                self.in_hand -= size
                self._moved.set()
            if end is not LaneEnd.DONE:
                return end
        return LaneEnd.DONE
