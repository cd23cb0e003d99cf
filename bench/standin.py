"""The Rasa stand-in as its own process (as Rasa is), stamping each push's arrival.

    python -m bench.standin PORT

Besides the stand-in's Rasa routes: GET /_bench/count (pushes so far), GET /_bench/arrivals
([[sender, text or "#intent", monotonic seconds], ...] in arrival order), POST /_bench/reset,
POST /_bench/hold/{sender} (that sender's calls wait, as behind Rasa's lock on a conversation
busy with a slow turn) and POST /_bench/release (every held sender's calls go on). time.monotonic() is CLOCK_MONOTONIC, one clock for every process of the
machine, so the runner compares it with its own send times.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

from aiohttp import web

from tests.support.rasa_stand_in import Pushed, RasaStandIn


class StampedPushes(list[Pushed]):
    """The stand-in's push list, noting when each push arrived (its body parsed)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: Pushed) -> None:
        self.times.append(time.monotonic())
        super().append(item)


def bench_app() -> web.Application:
    stand_in = RasaStandIn()
    stand_in.pushes = StampedPushes()
    app = stand_in.app()

    async def count(_request: web.Request) -> web.Response:
        return web.json_response({"pushes": len(stand_in.pushes)})

    async def arrivals(_request: web.Request) -> web.Response:
        pushes = stand_in.pushes
        assert isinstance(pushes, StampedPushes)
        rows: list[list[Any]] = [
            [p.sender, p.text if p.kind == "bot" else f"#{p.intent}", t]
            for p, t in zip(pushes, pushes.times, strict=True)
        ]
        return web.json_response(rows)

    async def reset(_request: web.Request) -> web.Response:
        stand_in.pushes = StampedPushes()
        stand_in.trackers.clear()
        # Between phases, not during one (collection is off, below): the last phase's garbage
        # goes, and what is left is out of the walks.
        gc.collect()
        gc.freeze()
        return web.json_response({"pushes": 0})

    async def hold(request: web.Request) -> web.Response:
        stand_in.hold(request.match_info["sender"])
        return web.json_response({"held": sorted(stand_in.holds)})

    async def release(_request: web.Request) -> web.Response:
        holds, stand_in.holds = stand_in.holds, {}
        for held in holds.values():
            held.released.set()
        return web.json_response({"released": sorted(holds)})

    app.router.add_post("/_bench/hold/{sender}", hold)
    app.router.add_post("/_bench/release", release)
    app.router.add_get("/_bench/count", count)
    app.router.add_get("/_bench/arrivals", arrivals)
    app.router.add_post("/_bench/reset", reset)
    return app


if __name__ == "__main__":
    # Its pauses would land on whichever side is running. A phase keeps every push it gets
    # (tens of thousands of objects), and its full collections paused the stand-in 20-90 ms
    # mid-phase: the worst bursts of the bridge's paced p99 (seen with gc.callbacks, at the
    # bursts' times). So no collection during a phase: `reset` collects and freezes between.
    gc.collect()
    gc.freeze()
    gc.disable()
    web.run_app(bench_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
