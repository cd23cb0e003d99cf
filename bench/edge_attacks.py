"""The public-edge attacks of issue 8, measured against a real `serve` process from outside.

    PYTHONPATH=. python bench/edge_attacks.py [TOKEN]

Starts `handoff-bridge serve` on loopback (real Redis, a fresh key prefix; BRIDGE_ACTION_TOKEN
set to TOKEN when given) and reports, per attack, what an attacker with network access gets:

- deflate bombs: 1 MiB of raw deflate (inflates to 1 GiB) POSTed to /webhook with
  `Content-Encoding: deflate`, and 1 MiB of zlib with no Content-Encoding (the "proxy dropped
  the header" fallback): status, seconds to the answer, the process's peak RSS, and the
  longest /health answer while it runs (a stalled event loop stalls every route);
- gzip bomb: the same as gzip to /8x8/events;
- slow clients: 200 idle connections, 100 sending their headers a byte a second, 100 sending a
  declared body a byte a second: how many the server still holds after 35 s;
- forged action calls: 100 rasa-sdk calls of `action_handoff_end` without the token: how many
  were run (2xx);
- the fd limit: serve under RLIMIT_NOFILE=512, 612 connections held for 10 s: the log lines
  written meanwhile, and whether /ready (a Redis round trip) answers once they close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from tests.support.serve_proc import ServeProc, base_env, nofile_limit

REDIS_URL = "redis://127.0.0.1:6379/0"
MIB = 1 << 20


def bomb(wbits: int, inflated_mib: int = 1024) -> bytes:
    """Zeros compressed at the format's best ratio (about 1:1000)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(MIB)
    parts = [packer.compress(zeros) for _ in range(inflated_mib)]
    return b"".join(parts) + packer.flush()


async def _health_watch(http: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> float:
    worst = 0.0
    while not stop.is_set():
        started = time.monotonic()
        async with http.get(f"{url}/health") as r:
            await r.read()
        worst = max(worst, time.monotonic() - started)
        await asyncio.sleep(0.05)
    return worst


async def bomb_attack(serve: ServeProc, path: str, body: bytes, encoding: str) -> str:
    async with aiohttp.ClientSession() as http:
        stop = asyncio.Event()
        watch = asyncio.create_task(_health_watch(http, serve.url, stop))
        started = time.monotonic()
        headers = {"Content-Type": "application/json"}
        if encoding:
            headers["Content-Encoding"] = encoding
        try:
            async with http.post(f"{serve.url}{path}", data=body, headers=headers) as r:
                await r.read()
                status = str(r.status)
        except aiohttp.ClientError as exc:
            status = f"connection error ({type(exc).__name__})"
        elapsed = time.monotonic() - started
        stop.set()
        worst = await watch
    return (
        f"{path} {encoding or 'unlabelled zlib'} bomb ({len(body) / MIB:.2f} MiB -> 1024 MiB): {status} in "
        f"{elapsed:.2f} s, peak RSS {serve.peak_rss_mb():.0f} MB, slowest /health {worst:.2f} s"
    )


async def _held(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(4096) != b""
    except ConnectionError:
        return False


async def _trickle(writer: asyncio.StreamWriter, data: bytes, closed: asyncio.Event) -> None:
    for byte in data:
        if closed.is_set():
            return
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(1.0)


async def slow_clients(serve: ServeProc, hold_s: float = 35.0) -> str:
    host, port = "127.0.0.1", serve.port
    kinds = {"idle": 200, "slow-header": 100, "slow-body": 100}
    closed_at: dict[str, list[float]] = {k: [] for k in kinds}
    started = time.monotonic()
    tasks = []

    async def one(kind: str) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        closed = asyncio.Event()
        trickler = None
        if kind == "slow-header":
            trickler = asyncio.create_task(
                _trickle(
                    writer, b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 60, closed
                )
            )
        elif kind == "slow-body":
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{")
            trickler = asyncio.create_task(_trickle(writer, b'"a":' * 100, closed))
        try:
            async with asyncio.timeout(hold_s):
                while await _held(reader):
                    pass
                closed_at[kind].append(time.monotonic() - started)
        except TimeoutError:
            pass
        closed.set()
        if trickler is not None:
            trickler.cancel()
        writer.close()

    for kind, count in kinds.items():
        tasks += [asyncio.create_task(one(kind)) for _ in range(count)]
    await asyncio.gather(*tasks)
    parts = []
    for kind, count in kinds.items():
        times = closed_at[kind]
        last = f", last closed at {max(times):.1f} s" if times else ""
        parts.append(f"{kind}: {count - len(times)}/{count} still held after {hold_s:.0f} s{last}")
    return "slow clients: " + "; ".join(parts)


def forged_call(sender: str) -> dict[str, object]:
    return {
        "next_action": "action_handoff_end",
        "sender_id": sender,
        "tracker": {"sender_id": sender, "slots": {}, "latest_message": {}, "events": []},
        "domain": {},
        "version": "3.6.21",
    }


async def forged_calls(serve: ServeProc, count: int = 100) -> str:
    run = 0
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession() as http:
        for i in range(count):
            async with http.post(f"{serve.url}/webhook", json=forged_call(f"victim-{i}")) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
                run += r.status < 300
    return f"forged /webhook calls: {run}/{count} run (statuses {json.dumps(statuses)})"


async def fd_flood(serve: ServeProc, count: int = 612, hold_s: float = 10.0) -> str:
    lines_before = len(serve.log_lines())
    held = []
    for _ in range(count):
        with contextlib.suppress(OSError, TimeoutError):
            held.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", serve.port), 2))
    await asyncio.sleep(hold_s)
    lines = len(serve.log_lines()) - lines_before
    for _, writer in held:
        writer.close()
    ready: object = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        for _ in range(50):
            try:
                async with http.get(f"{serve.url}/ready") as r:
                    ready = r.status
                    if r.status == 200:
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                ready = type(exc).__name__
            await asyncio.sleep(0.1)
    return (
        f"fd limit 512, {len(held)} connections held {hold_s:.0f} s: {lines} log lines, "
        f"/ready afterwards: {ready}"
    )


async def main(token: str | None) -> None:
    prefix = f"hbbench:{uuid.uuid4().hex[:12]}:"
    settings = {"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": prefix, "LOG_LEVEL": "WARNING"}
    if token:
        settings["BRIDGE_ACTION_TOKEN"] = token
    with tempfile.TemporaryDirectory() as tmp:
        deflate, zlibbed, gzipped = bomb(-15), bomb(15), bomb(31)
        for run in ("webhook", "webhook-bare", "events", "rest", "fd"):
            # A fresh process per bomb: the peak RSS of one must not hide the other's.
            limit = nofile_limit(512) if run == "fd" else None
            env = (
                base_env(**settings, BRIDGE_CLIENT_TIMEOUT_S="60")
                if run == "fd"
                else base_env(**settings)
            )
            serve = ServeProc(env, Path(tmp) / f"serve-{run}.log", preexec_fn=limit)
            await serve.start()
            try:
                if run == "webhook":
                    print(await bomb_attack(serve, "/webhook", deflate, "deflate"), flush=True)
                elif run == "webhook-bare":
                    print(await bomb_attack(serve, "/webhook", zlibbed, ""), flush=True)
                elif run == "events":
                    print(await bomb_attack(serve, "/8x8/events", gzipped, "gzip"), flush=True)
                elif run == "fd":
                    print(await fd_flood(serve), flush=True)
                else:
                    print(await forged_calls(serve), flush=True)
                    print(await slow_clients(serve), flush=True)
            finally:
                serve.stop()
    client = aioredis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}*", count=500):
        await client.delete(key)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else None))
