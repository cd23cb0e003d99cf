"""The simulator's webhook retry schedule is configurable, so tests can make it give up."""

from __future__ import annotations

import argparse
import logging

import aiohttp
import pytest

from bridge.logs import JsonFormatter
from bridge.simulator import Simulator
from bridge.simulator.cli import retry_delays
from tests.simulator.conftest import Receiver, gw_create, settle


async def test_a_schedule_set_at_run_time_gives_up_after_its_attempts(
    http: aiohttp.ClientSession, sim: Simulator, receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    async with http.post(f"{sim.base_url}/_sim/retry-schedule", json={"delays": [0.01]}) as r:
        assert r.status == 200 and await r.json() == {"delays": [0.01], "attempts": 2}
    receiver.default = 503
    caplog.set_level(logging.INFO, logger="bridge.simulator")
    cid = await gw_create(http, sim)
    await settle(sim)
    tries = [d for d in sim.deliveries if d.conversation_id == cid]
    first_event = tries[0].event_id
    assert [d.retry for d in tries if d.event_id == first_event] == [0, 1]
    assert [d.final for d in tries if d.event_id == first_event] == [False, True]
    gave_up = [r for r in caplog.records if r.getMessage() == "sim_delivery_gave_up"]
    assert gave_up and gave_up[0].__dict__["attempts"] == 2
    # one style everywhere: an event name and fields, formatted as one JSON line
    assert all(" " not in r.getMessage() for r in caplog.records if r.name.startswith("bridge.sim"))
    assert '"event": "sim_delivery_gave_up"' in JsonFormatter().format(gave_up[0])
    sim.set_retry_delays(())
    cid = await gw_create(http, sim)
    await settle(sim)
    assert {d.retry for d in sim.deliveries if d.conversation_id == cid} == {0}


async def test_a_bad_schedule_is_refused(http: aiohttp.ClientSession, sim: Simulator) -> None:
    before = sim.retry_delays
    for bad in ({"delays": "1,2"}, {"delays": [-1]}, {"delays": [True]}, {}):
        async with http.post(f"{sim.base_url}/_sim/retry-schedule", json=bad) as r:
            assert r.status == 400, bad
    assert sim.retry_delays == before


def test_the_command_line_takes_a_schedule() -> None:
    assert retry_delays("0.2, 0.5,1") == (0.2, 0.5, 1.0)
    assert retry_delays("") == ()
    for bad in ("a,b", "-1", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            retry_delays(bad)
