"""Running `serve`: build the runtime, serve the app, shut down gracefully on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aiohttp import web

from bridge.settings import Settings
from bridge.web.app import create_app
from bridge.web.connections import CappedSite
from bridge.web.limits import server_options
from bridge.web.runtime import build_runtime

log = logging.getLogger(__name__)

# Net allocations of tracked objects between two collections of the youngest generation
# (Python's default is 700). At saturation serve holds several thousand young objects in
# flight (64 requests and their deliveries: coroutines, frames, futures, dicts), so at 700 a
# collection came every dozen events and walked them all only to find them alive: ~20 µs of
# CPU per event, 7 % of serve's, measured with `gc.callbacks` and the thread's CPU time
# (docs/performance.md). Above that population collections become rare (one per 10,000
# events in the benchmark) and no longer (~1–2 ms) than the default's; garbage in cycles,
# about one object per event, waits for at most this many allocations.
YOUNG_COLLECTION_THRESHOLD = 10_000


async def serve(settings: Settings) -> None:
    runtime = await build_runtime(settings)
    app = create_app(runtime)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None,
        **server_options(settings.bridge_client_timeout_s),
    )  # fmt: skip
    await runner.setup()
    site = CappedSite(runner, settings.bridge_host, settings.bridge_port)
    await site.start()
    frozen = settle_heap()
    log.info(
        "serving",
        extra={
            "host": settings.bridge_host,
            "port": settings.bridge_port,
            "frozen_objects": frozen,
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting_down")
    # Stop taking requests, then let the relay finish what it has in hand (cleanup_ctx).
    await runner.cleanup()


def settle_heap() -> int:
    """Move everything alive at startup (the imported libraries: most of the heap) out of the
    garbage collector's sight. Each full collection walks every tracked object, and with the
    startup heap in it one took up to ~56 ms on the benchmark's machine: a pause of the whole
    event loop, every request and delivery behind it (the p99 at a paced load). Frozen, the
    same collections take ~3 ms (docs/performance.md). Objects made later are collected as
    before, the youngest generation once per YOUNG_COLLECTION_THRESHOLD allocations. Returns
    how many objects are frozen (on serve's "serving" line)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, older, oldest)
    return gc.get_freeze_count()
