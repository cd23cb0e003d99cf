"""CPU per INFO line: the relay's `relay_processed` line, logged as `serve` logs it.

`bridge.logs.configure` as `serve` calls it (INFO, a key), stderr pointed at a file, then N
lines with the extra fields of `Deliverer._processed`, round-robin over a set of senders.
CPU time (`time.process_time`), not wall time: other work on the machine does not count.

    python -m bench.logline [--lines 200000] [--senders 256] [--loop 8] [--out /tmp/x.log]

`--loop K` logs from inside a running asyncio loop, K lines per turn; its figure includes the
loop's own cost per turn, which `--loop K --bare` measures alone (no line logged).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable

from bridge import logs

log = logging.getLogger("bridge.relay.deliver")

Emit = Callable[[int], None]


def _emitter(senders: list[str], bare: bool) -> Emit:
    outcomes = ("delivered", "queued", "dropped")

    def emit(i: int) -> None:
        sender = senders[i % len(senders)]
        if bare:
            return
        log.info("relay_processed", extra={"sender": sender, "event_id": f"{i}-0",
                                           "conversation": f"c-{sender}",
                                           "outcome": outcomes[i % 3], "run": 1})  # fmt: skip

    return emit


def _plain(emit: Emit, lines: int) -> None:
    for i in range(lines):
        emit(i)


async def _in_loop(emit: Emit, lines: int, per_turn: int) -> None:
    for start in range(0, lines, per_turn):
        for i in range(start, min(start + per_turn, lines)):
            emit(i)
        await asyncio.sleep(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--senders", type=int, default=256)
    parser.add_argument("--loop", type=int, default=0, help="lines per turn of a loop (0: none)")
    parser.add_argument("--bare", action="store_true", help="everything but the log call")
    parser.add_argument("--out", default=f"/tmp/logline-{os.getpid()}.log")
    args = parser.parse_args()

    # stderr itself points at the file, so the handler writes through it as serve's does.
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    logs.configure("INFO", id_key=logs.derive_id_key("bench"))
    emit = _emitter([f"+49151{n:08d}" for n in range(args.senders)], args.bare)

    start = time.process_time()
    if args.loop:
        asyncio.run(_in_loop(emit, args.lines, args.loop))
    else:
        _plain(emit, args.lines)
    logging.shutdown()
    cpu = time.process_time() - start

    with open(args.out, encoding="utf-8") as lines:
        written = sum(1 for _ in lines)
    print(f"{cpu / args.lines * 1e6:.2f} us CPU per line ({args.lines} lines, {written} written, "
          f"{args.senders} senders, loop {args.loop or '-'}{', bare' if args.bare else ''})")  # fmt: skip
    os.unlink(args.out)
    sys.exit(0 if written == (0 if args.bare else args.lines) else 1)


if __name__ == "__main__":
    main()
