"""Bounded work per request, attacked from outside a real `serve` process (issue 8, item 3):
compression bombs, bad encodings, slow and idle clients, the file-descriptor limit.

Memory is the process's peak RSS (VmHWM) from /proc; the seconds are in
bench/edge_attacks.py, as timing asserts do not belong in tests."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bridge.web.connections import RESERVED_FDS
from tests.core.test_routes import _action_call
from tests.support.serve_proc import ServeProc, base_env, nofile_limit

MIB = 1 << 20
CLIENT_TIMEOUT_S = 1.5
# What a bomb may add to the process at most: the 32 MiB action-call cap, twice (wire bytes
# and inflated bytes), and change. Without the cap a 1 MiB bomb adds about 1 GiB.
BOMB_RSS_BUDGET_MB = 160


def _bomb(wbits: int, inflated_mib: int = 1024) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(MIB)
    return b"".join(packer.compress(zeros) for _ in range(inflated_mib)) + packer.flush()


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"raw": _bomb(-15), "zlib": _bomb(15), "gzip": _bomb(31)}


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[ServeProc]:
    env = base_env(BRIDGE_CLIENT_TIMEOUT_S=str(CLIENT_TIMEOUT_S), LOG_LEVEL="WARNING")
    proc = ServeProc(env, tmp_path / "serve.log")
    await proc.start()
    yield proc
    proc.stop()


async def _post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as r:
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("kind", "headers"),
    [
        ("raw", {"Content-Encoding": "deflate"}),  # raw deflate, as the attack
        ("zlib", {"Content-Encoding": "deflate"}),  # what Rasa's aiohttp client sends
        ("gzip", {"Content-Encoding": "gzip"}),
        ("zlib", {}),  # a deflated body whose header a proxy dropped
    ],
)
async def test_a_bomb_to_the_action_endpoint_is_refused_within_the_cap(
    serve: ServeProc, bombs: dict[str, bytes], kind: str, headers: dict[str, str]
) -> None:
    before = serve.rss_mb()
    status, body = await _post(f"{serve.url}/webhook", bombs[kind], **headers)
    assert status == 413, body
    # 1 GiB of zeros in 1 MiB: the process grew by the cap, not by the inflated size.
    assert serve.peak_rss_mb() - before < BOMB_RSS_BUDGET_MB
    assert (await _post(f"{serve.url}/webhook", b"{}"))[0] == 400  # still serving


async def test_compressed_action_calls_still_work(serve: ServeProc) -> None:
    call = json.dumps(_action_call("action_handoff_notice", "zip-user")).encode()
    for encoding, packed in (
        ("deflate", zlib.compress(call)),
        ("deflate", zlib.compress(call, wbits=-15)),
        ("gzip", gzip.compress(call)),
    ):
        assert (await _post(f"{serve.url}/webhook", packed, **{"Content-Encoding": encoding}))[
            0
        ] == 200


async def test_an_encoded_body_to_the_8x8_webhook_is_refused_unread(
    serve: ServeProc, bombs: dict[str, bytes]
) -> None:
    # 8x8 sends plain JSON: an encoded body is refused before a byte of it is inflated.
    before = serve.rss_mb()
    for encoding in ("gzip", "deflate", "br"):
        status, body = await _post(
            f"{serve.url}/8x8/events", bombs["gzip"], **{"Content-Encoding": encoding}
        )
        assert (status, body["result"]) == (415, "Content-Encoding not accepted on this route")
    assert serve.peak_rss_mb() - before < 32


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"not gzip at all", "gzip"),
        (gzip.compress(b'{"next_action": "x"}')[:-9], "gzip"),  # truncated
        (b"\x78\x9c garbage", "deflate"),
        (zlib.compress(b"{}", wbits=-15) + b"\xff", "deflate"),
    ],
)
async def test_a_broken_encoded_body_is_400(serve: ServeProc, body: bytes, encoding: str) -> None:
    status, answer = await _post(f"{serve.url}/webhook", body, **{"Content-Encoding": encoding})
    assert status == 400, answer


async def test_unknown_encodings_are_415_everywhere(serve: ServeProc) -> None:
    for path in ("/webhook", "/8x8/events"):
        status, _ = await _post(f"{serve.url}{path}", b"{}", **{"Content-Encoding": "zstd, br"})
        assert status == 415


# --- slow and idle clients ---


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> bytes:
    """What the server sent before closing the connection; fails if it stays open."""
    received = b""
    async with asyncio.timeout(within):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_idle_slow_header_and_slow_body_connections_are_closed(serve: ServeProc) -> None:
    host, port = "127.0.0.1", serve.port
    idle = [await asyncio.open_connection(host, port) for _ in range(20)]
    slow_header = [await asyncio.open_connection(host, port) for _ in range(20)]
    slow_body = [await asyncio.open_connection(host, port) for _ in range(20)]
    for _, writer in slow_header:
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nX-Pad: aaa")
    for _, writer in slow_body:
        writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    # Trickling more bytes does not keep a connection open: the deadline is per request.
    for _, writer in slow_header + slow_body:
        writer.write(b"a")
    within = CLIENT_TIMEOUT_S * 4
    answers = await asyncio.gather(
        *(_closed_by_server(reader, within) for reader, _ in idle + slow_header + slow_body)
    )
    assert answers[:40] == [b""] * 40  # idle and half-sent headers: closed without an answer
    for answer in answers[40:]:
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    for _, writer in idle + slow_header + slow_body:
        writer.close()


async def test_a_kept_alive_connection_is_closed_once_idle(serve: ServeProc) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", serve.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await _closed_by_server(reader, CLIENT_TIMEOUT_S * 4)
    assert answer.startswith(b"HTTP/1.1 200 ")
    writer.close()


# --- the file-descriptor limit ---

NOFILE = 512  # the ceiling is NOFILE - RESERVED_FDS connections
BACKLOG = 128  # accepted in one batch before the count catches up (aiohttp's default backlog)


async def _answer_or_held(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await asyncio.wait_for(reader.read(4096), 2.0)
    except TimeoutError:
        return None  # still held open by the server


async def test_at_the_fd_limit_serve_refuses_briefly_and_keeps_redis(
    tmp_path: Path, real_redis_url: str, key_prefix: str
) -> None:
    env = base_env(
        REDIS_URL=real_redis_url, REDIS_KEY_PREFIX=key_prefix, LOG_LEVEL="INFO",
        BRIDGE_CLIENT_TIMEOUT_S="60",  # the connections below stay until the test closes them
    )  # fmt: skip
    serve = ServeProc(env, tmp_path / "serve.log", preexec_fn=nofile_limit(NOFILE))
    await serve.start()
    ceiling = NOFILE - RESERVED_FDS
    total = NOFILE + 100  # more connections than the process has descriptors
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        lines_before = len(serve.log_lines())
        for _ in range(total):
            held.append(await asyncio.open_connection("127.0.0.1", serve.port))
        answers = await asyncio.gather(*(_answer_or_held(reader) for reader, _ in held))
        refused = [a for a in answers if a is not None]
        kept = total - len(refused)
        assert all(a.startswith(b"HTTP/1.1 503 ") and b"too many" in a for a in refused)
        assert ceiling <= kept <= ceiling + BACKLOG, kept
        for _, writer in held:
            writer.close()
        held.clear()
        async with aiohttp.ClientSession() as http:
            # Still serving, and the store (Redis) still answers.
            for _ in range(100):
                try:
                    async with http.get(f"{serve.url}/ready") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            async with http.get(f"{serve.url}/ready") as r:
                assert r.status == 200, await r.text()
        # Hundreds of refusals logged as a line or two, not one (or a traceback) each, and
        # the process never ran out of descriptors (asyncio logs each failed accept).
        new_lines = [  # (the relay taking its partitions at start is not part of this)
            line for line in serve.log_lines()[lines_before:] if "partition_acquired" not in line
        ]
        refusal_lines = [line for line in new_lines if "connections_refused" in line]
        assert 1 <= len(refusal_lines) <= 3 and len(new_lines) <= 10, new_lines
        assert not any("out of system resource" in line for line in new_lines)
    finally:
        for _, writer in held:
            writer.close()
        serve.stop()
