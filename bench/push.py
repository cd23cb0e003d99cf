"""CPU per push into Rasa: `RasaClient.push_bot_message` into the runner's stand-in.

    python -m bench.push [--pushes N] [--senders K] [--repeat R]

The stand-in runs in its own process (as Rasa does); the figure is this process's CPU
(`time.process_time`) per push, K senders pushing at once as the relay's lanes do. The best of
R runs is printed: on a shared machine the other runs only add noise.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench import procs
from bridge.ids import SenderId
from bridge.rasa.client import RasaClient


async def _run(url: str, pushes: int, senders: int) -> float:
    rasa = RasaClient(url)
    try:
        await rasa.push_bot_message(SenderId("warm"), "hello", marker="warm:0")

        async def sender(k: int) -> None:
            for i in range(k, pushes, senders):
                text = f"message {i} of a conversation"
                await rasa.push_bot_message(
                    SenderId(f"user-{k}"), text, marker=f"ev-{i}:0", agent_name="Anna"
                )

        before = time.process_time()
        await asyncio.gather(*(sender(k) for k in range(senders)))
        return (time.process_time() - before) / pushes
    finally:
        await rasa.close()


async def main(pushes: int, senders: int, repeat: int) -> None:
    stand_in = procs.stand_in()
    await stand_in.start()
    try:
        best = min([await _run(stand_in.url, pushes, senders) for _ in range(repeat)])
    finally:
        stand_in.stop()
    print(
        f"{1e6 * best:.1f} µs CPU per push (best of {repeat}, {pushes} pushes, {senders} senders)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--pushes", type=int, default=4000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.pushes, args.senders, args.repeat))
