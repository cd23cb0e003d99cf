"""CPU per push into Rasa: `RasaClient.push_bot_message` into the runner's stand-in.

    python -m bench.push [--pushes N] [--senders K] [--repeat R] [--aiohttp] [--callgrind]

The stand-in runs in its own process (as Rasa does); the figure is this process's CPU
(`time.process_time`) per push, K senders pushing at once as the relay's lanes do. The best of
R runs is printed: on a shared machine the other runs only add noise. `--aiohttp` sends the
same pushes through the client's aiohttp session instead of its push line (what the push
cost before the line), for comparison.

CPU time swings with the machine's load; instruction counts do not. For those, run it under
callgrind with `--callgrind`, which switches instrumentation on for the measured pushes only:

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/push.cg \\
        python -m bench.push --pushes 2000 --repeat 1 --callgrind

and divide the `totals:` line of /tmp/push.cg by the pushes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable

from yarl import URL

from bench import procs
from bridge.ids import SenderId
from bridge.rasa.client import BotMessage, RasaClient, _bot_event

Push = Callable[[SenderId, str, str], Awaitable[None]]


def _pusher(rasa: RasaClient, via_aiohttp: bool) -> Push:
    async def push(sender: SenderId, text: str, marker: str) -> None:
        await rasa.push_bot_message(sender, text, marker=marker, agent_name="Anna")

    async def push_aiohttp(sender: SenderId, text: str, marker: str) -> None:
        # The push as it went before the push line: the same request, through aiohttp.
        url = URL(rasa._base + rasa._events_target(sender), encoded=True)
        events = [_bot_event(BotMessage(text, marker, "Anna"))]
        await rasa._request("POST", url, events, None, read=False)

    return push_aiohttp if via_aiohttp else push


def _callgrind(enabled: bool, state: str) -> None:
    """Instrumentation on or off, when this process runs under
    `valgrind --tool=callgrind --instr-atstart=no`: only the measured pushes are counted."""
    if enabled:
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


async def _run(url: str, pushes: int, senders: int, args: argparse.Namespace) -> float:
    rasa = RasaClient(url)
    push = _pusher(rasa, args.aiohttp)
    try:
        await push(SenderId("warm"), "hello", "warm:0")

        async def sender(k: int) -> None:
            for i in range(k, pushes, senders):
                await push(SenderId(f"user-{k}"), f"message {i} of a conversation", f"ev-{i}:0")

        _callgrind(args.callgrind, "on")
        before = time.process_time()
        await asyncio.gather(*(sender(k) for k in range(senders)))
        spent = time.process_time() - before
        _callgrind(args.callgrind, "off")
        return spent / pushes
    finally:
        await rasa.close()


async def main(args: argparse.Namespace) -> None:
    stand_in = procs.stand_in()
    await stand_in.start()
    try:
        runs = [
            await _run(stand_in.url, args.pushes, args.senders, args) for _ in range(args.repeat)
        ]
    finally:
        stand_in.stop()
    path = "aiohttp" if args.aiohttp else "push line"
    print(
        f"{1e6 * min(runs):.1f} µs CPU per push via the {path} (best of {args.repeat}, "
        f"{args.pushes} pushes, {args.senders} senders; all: "
        f"{', '.join(f'{1e6 * r:.1f}' for r in runs)})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=4000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--aiohttp", action="store_true",
                        help="push through the client's aiohttp session (the path before the line)")  # fmt: skip
    parser.add_argument("--callgrind", action="store_true",
                        help="under callgrind (--instr-atstart=no): count the measured pushes only")  # fmt: skip
    asyncio.run(main(parser.parse_args()))
