"""When the recovery loop sweeps: a sweep that found the store down is tried again soon, so
the first sweep after the store is back does the work (not one an interval later)."""

from __future__ import annotations

from pydantic import SecretStr

from bridge.eightbyeight import make_client
from bridge.eightbyeight.config import EightByEightConfig
from bridge.metrics import Metrics
from bridge.recovery import RecoveryConfig, RecoveryLoop, Sweeper
from bridge.store import open_store
from bridge.store.embedded import redis_client
from tests.support.waiting import eventually


async def test_a_sweep_that_found_the_store_down_is_retried_until_it_is_back(
    real_redis_url: str, key_prefix: str
) -> None:
    store = await open_store(real_redis_url, prefix=key_prefix)
    working = store.redis
    store.redis = redis_client("redis://127.0.0.1:1")  # nothing listens there: Redis is down
    # No live handoff: the sweep never calls 8x8, whose address is never reached.
    chat = make_client(EightByEightConfig("gateway", "http://127.0.0.1:1", SecretStr("k"), "ch"))
    sweeper = Sweeper(store, chat, Metrics(), RecoveryConfig(interval_s=3600))
    loop = RecoveryLoop(sweeper, retry_s=0.01)
    loop.start()
    try:
        await eventually(lambda: loop.failures >= 2, what="failed sweeps while Redis is down")
        assert loop.sweeps == 0
        down = store.redis
        store.redis = working  # Redis is back
        await eventually(lambda: loop.sweeps == 1, what="the sweep once Redis is back")
        assert loop.last is not None and loop.last.swept
    finally:
        await loop.stop()
        await down.aclose()
        await chat.close()
        await store.close()
