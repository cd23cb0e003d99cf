"""The consumer's running lanes (bridge/relay/pipeline.py) on their own, with a stand-in for a
unit's work that waits for the test's word: order within a lane, lanes side by side, joins,
entries in hand, and what a lane that stops short leaves."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

import pytest

from bridge.ids import ConversationId
from bridge.relay.lanes import Key, LaneEnd
from bridge.relay.pipeline import Pipeline

ADA: Key = ("sender", "ada")
BOB: Key = ("sender", "bob")
_SIGNAL_S = 5.0  # bounds a wait for a signal that only a broken pipeline never gives


class Work:
    """Each unit (a name) starts, then waits until the test lets it end with `end`."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.begun = asyncio.Event()  # a unit started since the last `clear`
        self._gates: dict[str, asyncio.Future[LaneEnd]] = {}
        self.wakes = 0

    async def __call__(self, unit: str) -> LaneEnd:
        self.started.append(unit)
        self.begun.set()
        return await self._gate(unit)

    def _gate(self, unit: str) -> asyncio.Future[LaneEnd]:
        return self._gates.setdefault(unit, asyncio.get_running_loop().create_future())

    def end(self, unit: str, end: LaneEnd | BaseException = LaneEnd.DONE) -> None:
        gate = self._gate(unit)
        if isinstance(end, BaseException):
            gate.set_exception(end)
        else:
            gate.set_result(end)

    def wake(self) -> None:
        self.wakes += 1

    async def started_with(self, unit: str) -> None:
        async with asyncio.timeout(_SIGNAL_S):
            while unit not in self.started:
                self.begun.clear()
                await self.begun.wait()


def pipeline(work: Work, join: Callable[[str, str], str | None] | None = None) -> Pipeline[str]:
    if join is None:
        return Pipeline(work, wake=work.wake, name="p0")
    return Pipeline(work, wake=work.wake, name="p0", join=join)


def c(name: str) -> ConversationId:
    return ConversationId(name)


async def test_a_lanes_units_go_one_after_another_and_lanes_side_by_side() -> None:
    work = Work()
    lanes = pipeline(work)
    lanes.dispatch(ADA, c("x"), "a1", 1)
    lanes.dispatch(ADA, c("x"), "a2", 2)
    lanes.dispatch(BOB, c("y"), "b1", 1)
    await work.started_with("b1")  # bob's lane runs while ada's first unit is at work
    assert work.started == ["a1", "b1"] and lanes.in_hand == 4
    assert lanes.in_flight() == {c("x"): ADA, c("y"): BOB}
    work.end("b1")
    await lanes.lane_ended(BOB)
    assert lanes.in_flight() == {c("x"): ADA} and lanes.in_hand == 3
    work.end("a1")
    await work.started_with("a2")
    work.end("a2")
    await lanes.quiet()
    assert work.started == ["a1", "b1", "a2"]
    assert not lanes.busy and lanes.in_hand == 0 and not lanes.failed and work.wakes == 0


async def test_a_unit_dispatched_after_its_lane_ended_starts_a_new_one() -> None:
    work = Work()
    lanes = pipeline(work)
    lanes.dispatch(ADA, c("x"), "a1", 1)
    work.end("a1")
    await lanes.quiet()
    lanes.dispatch(ADA, c("x"), "a2", 1)
    assert lanes.busy
    await work.started_with("a2")
    names = {t.get_name() for t in asyncio.all_tasks()}
    assert "p0-lane1" in names  # a new lane, not the ended one's
    work.end("a2")
    await lanes.quiet()
    assert work.started == ["a1", "a2"]


@pytest.mark.parametrize("end", [LaneEnd.STOPPED, LaneEnd.LEASE, LaneEnd.LOST])
async def test_a_lane_that_stops_short_drops_the_rest_and_says_so(end: LaneEnd) -> None:
    work = Work()
    lanes = pipeline(work)
    for unit in ("a1", "a2", "a3"):
        lanes.dispatch(ADA, c("x"), unit, 1)
    lanes.dispatch(BOB, c("y"), "b1", 1)
    await work.started_with("b1")
    work.end("a1", end)
    await lanes.lane_ended(ADA)
    assert lanes.failed and work.wakes == 1
    assert lanes.in_hand == 1  # a2 and a3 dropped (they are still in the stream): b1 is left
    work.end("b1")
    assert await lanes.settle() == (end, None)
    assert work.started == ["a1", "b1"] and lanes.in_hand == 0
    assert not lanes.failed  # settled: the consumer starts again


async def test_a_lane_that_raises_has_its_error_given_once_every_lane_ended() -> None:
    work = Work()
    lanes = pipeline(work)
    lanes.dispatch(ADA, c("x"), "a1", 1)
    lanes.dispatch(ADA, c("x"), "a2", 1)
    lanes.dispatch(BOB, c("y"), "b1", 1)
    await work.started_with("b1")
    error = RuntimeError("redis unavailable")
    work.end("a1", error)
    await lanes.lane_ended(ADA)
    assert lanes.failed and lanes.in_hand == 1
    settling = asyncio.create_task(lanes.settle())
    work.end("b1")
    assert await settling == (LaneEnd.DONE, error)
    assert not lanes.busy and work.started == ["a1", "b1"]  # bob's lane ended first


async def test_a_unit_joins_the_one_waiting_before_it_never_one_begun() -> None:
    def join(queued: str, behind: str) -> str | None:
        return f"{queued}+{behind}"

    work = Work()
    lanes = pipeline(work, join)
    lanes.dispatch(ADA, c("x"), "a1", 1)
    await work.started_with("a1")
    lanes.dispatch(ADA, c("x"), "a2", 1)
    lanes.dispatch(ADA, c("x"), "a3", 2)
    assert lanes.in_hand == 4
    work.end("a1")
    await work.started_with("a2+a3")
    work.end("a2+a3")
    await lanes.quiet()
    assert work.started == ["a1", "a2+a3"] and lanes.in_hand == 0


async def test_room_waits_until_fewer_entries_are_in_hand() -> None:
    work = Work()
    lanes = pipeline(work)
    lanes.dispatch(ADA, c("x"), "a1", 3)
    lanes.dispatch(ADA, c("x"), "a2", 1)
    room = asyncio.create_task(lanes.room(2))
    await work.started_with("a1")
    assert not room.done()
    work.end("a1")
    async with asyncio.timeout(_SIGNAL_S):
        await room  # one entry left in hand
    assert lanes.in_hand == 1
    work.end("a2")
    await lanes.quiet()


async def test_cancelling_waits_for_every_lane_to_end() -> None:
    work = Work()
    lanes = pipeline(work)
    lanes.dispatch(ADA, c("x"), "a1", 1)
    lanes.dispatch(ADA, c("x"), "a2", 1)
    await work.started_with("a1")
    tasks = {t for t in asyncio.all_tasks() if t.get_name().startswith("p0-lane")}
    await lanes.cancel()
    assert all(t.done() for t in tasks)
    assert not lanes.busy and lanes.in_hand == 0 and work.started == ["a1"]


async def test_lanes_run_in_the_context_of_the_task_that_made_the_pipeline() -> None:
    """Whoever dispatches (the consumer, or the door handing an entry straight to a lane): a
    lane's work sees the consumer's context (`_CONSUMER`: whether it may go on)."""
    whose: contextvars.ContextVar[str] = contextvars.ContextVar("whose", default="nobody")
    seen: list[str] = []

    async def work(unit: str) -> LaneEnd:
        seen.append(whose.get())
        return LaneEnd.DONE

    async def make() -> Pipeline[str]:
        whose.set("consumer")
        return Pipeline(work, wake=lambda: None, name="p0")

    lanes = await asyncio.create_task(make())
    whose.set("door")
    lanes.dispatch(ADA, ConversationId("c1"), "a1", 1)
    async with asyncio.timeout(_SIGNAL_S):
        await lanes.quiet()
    assert seen == ["consumer"]
