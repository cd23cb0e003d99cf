"""The push's own HTTP/1.1 client (bridge/rasa/pushline.py), over real loopback sockets: the
Rasa stand-in for the ordinary path, and small raw servers for what a server may answer or do
(chunked, Connection: close, HTTP/1.0, 1xx, oversized, malformed, an idle connection closed,
no answer at all), the pool's bound, cancellation, and TLS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from bridge.errors import PermanentUpstreamError, RetryableUpstreamError, UpstreamError
from bridge.ids import SenderId
from bridge.rasa import pushline
from bridge.rasa.client import RasaClient
from bridge.rasa.pushline import PushLine, _Connection
from tests.core.conftest import serve_app
from tests.support.rasa_stand_in import RasaStandIn

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
TARGET = "/conversations/ada/tracker/events?include_events=NONE"


@dataclass
class Exchange:
    """One request a raw server read, and the connection to answer it on."""

    connection: int  # which of the server's connections, from 0
    head: bytes
    body: bytes
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


@dataclass
class Seen:
    """What one connection brought: its requests, and any bytes after the server closed its
    side (a request written to a connection the server had closed)."""

    requests: list[bytes] = field(default_factory=list)
    after_close: bytes = b""
    done: asyncio.Event = field(default_factory=asyncio.Event)


# Answers one request; False: stop serving the connection (the server closes it).
Handler = Callable[[Exchange], Awaitable[bool]]
StartServer = Callable[[Handler], Awaitable[tuple["RawServer", str]]]


class RawServer:
    """A raw HTTP/1.1 server on loopback: reads each request whole, lets `handler` answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: list[Seen] = []
        self.arrived = 0
        self.arrival = asyncio.Event()  # set on each request read
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> str:
        self._server = await asyncio.start_server(self._serve, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number, seen = len(self.connections), Seen()
        self.connections.append(seen)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                match = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
                body = await reader.readexactly(int(match[1])) if match else b""
                seen.requests.append(head + body)
                self.arrived += 1
                self.arrival.set()
                if not await self.handler(Exchange(number, head, body, reader, writer)):
                    break
        finally:
            writer.close()
            seen.done.set()

    async def wait_arrived(self, count: int) -> None:
        async with asyncio.timeout(10):
            while self.arrived < count:
                self.arrival.clear()
                await self.arrival.wait()


async def answer_ok(ex: Exchange) -> bool:
    ex.writer.write(OK)
    return True


def answering(raw: bytes, *, keep: bool = True) -> Handler:
    async def handler(ex: Exchange) -> bool:
        ex.writer.write(raw)
        return keep

    return handler


@pytest.fixture
async def raw_server() -> AsyncIterator[StartServer]:
    servers: list[RawServer] = []

    async def start(handler: Handler) -> tuple[RawServer, str]:
        server = RawServer(handler)
        servers.append(server)
        return server, await server.start()

    yield start
    for server in servers:
        await server.close()


async def push(client: RasaClient, text: str = "hi") -> None:
    await client.push_bot_message(SenderId("ada"), text, marker=f"{text}:0")


async def pushed(url: str, *texts: str) -> None:
    """Each text pushed in turn through one new client, closed at the end."""
    client = RasaClient(url, timeout_s=10)
    try:
        for text in texts:
            await push(client, text)
    finally:
        await client.close()


async def failure_between_two(url: str) -> RetryableUpstreamError:
    """Pushes "one", "fail" (the server answers it with an error) and "two" through one new
    client; the retryable error "fail" raised."""
    client = RasaClient(url, timeout_s=10)
    try:
        await push(client, "one")
        with pytest.raises(RetryableUpstreamError) as failed:
            await push(client, "fail")
        await push(client, "two")
        return failed.value
    finally:
        await client.close()


async def test_pushes_reach_the_stand_in_over_one_kept_alive_connection() -> None:
    stand_in = RasaStandIn()
    connections: list[object] = []
    server = await serve_app(stand_in.app())
    client = RasaClient(str(server.make_url("")).rstrip("/"))
    try:
        for text in ("one", "two", "three"):
            await push(client, text)
            connections.append(client._pushes()._idle[-1])
        assert stand_in.texts("ada") == ["one", "two", "three"]
        assert connections[0] is connections[1] is connections[2]
    finally:
        await client.close()
        await server.close()


async def test_a_chunked_answer_is_read_whole_and_its_connection_reused(
    raw_server: StartServer,
) -> None:
    async def chunked(ex: Exchange) -> bool:
        status = b"500 Internal Server Error" if b"fail" in ex.body else b"200 OK"
        ex.writer.write(b"HTTP/1.1 " + status + b"\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n")
        await ex.writer.drain()  # the answer in two reads
        ex.writer.write(b"boom\r\n3\r\n!!!\r\n0\r\n\r\n")
        return True

    server, url = await raw_server(chunked)
    failed = await failure_between_two(url)
    assert (failed.status, failed.code) == (500, "boom!!!")
    assert [len(c.requests) for c in server.connections] == [3]


async def test_an_answer_with_connection_close_is_not_reused(raw_server: StartServer) -> None:
    # The server keeps its side open: only the header says not to reuse the connection.
    closing = OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    server, url = await raw_server(answering(closing))
    await pushed(url, "one", "two")
    assert [len(c.requests) for c in server.connections] == [1, 1]


async def test_an_idle_connection_the_server_closed_is_not_written_to(
    raw_server: StartServer,
) -> None:
    """Sanic closes an idle keep-alive connection after 5 s: the next push goes on a new one,
    and nothing of it was written to the closed one."""
    close_now = asyncio.Event()

    async def then_close(ex: Exchange) -> bool:
        ex.writer.write(OK)
        if ex.connection == 0:
            await close_now.wait()
            ex.writer.write_eof()  # the server's keep-alive timeout: its side closes
            seen = server.connections[0]
            seen.after_close = await ex.reader.read()  # until the client closes its side
            return False
        return True

    server, url = await raw_server(then_close)
    client = RasaClient(url, timeout_s=5)
    try:
        await push(client, "one")
        close_now.set()
        async with asyncio.timeout(10):  # the client closed its side: it saw the close
            await server.connections[0].done.wait()
        await push(client, "two")
        assert [len(c.requests) for c in server.connections] == [1, 1]
        assert server.connections[0].after_close == b""
    finally:
        await client.close()


async def test_no_answer_times_out_as_retryable_and_the_connection_is_dropped(
    raw_server: StartServer,
) -> None:
    async def silent_first(ex: Exchange) -> bool:
        if ex.connection == 0:
            server.connections[0].after_close = await ex.reader.read()  # until the client closes
            return False
        ex.writer.write(OK)
        return True

    server, url = await raw_server(silent_first)
    client = RasaClient(url, timeout_s=0.5)
    try:
        with pytest.raises(RetryableUpstreamError, match="^Rasa unreachable: TimeoutError$"):
            await push(client, "one")
        async with asyncio.timeout(10):  # the client closed the connection that timed out
            await server.connections[0].done.wait()
        await push(client, "two")
        assert [len(c.requests) for c in server.connections] == [1, 1]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(400, PermanentUpstreamError, False), (409, RetryableUpstreamError, True),
     (404, RetryableUpstreamError, True), (503, RetryableUpstreamError, True)],
)  # fmt: skip
async def test_an_error_status_maps_as_rasas_other_calls_do(
    raw_server: StartServer, status: int, error: type[UpstreamError], retryable: bool
) -> None:
    detail = ("é" * 150 + "x" * 300).encode()  # more than the 200 characters kept
    answer = b"HTTP/1.1 %d Nope\r\nContent-Length: %d\r\n\r\n%s" % (status, len(detail), detail)
    server, url = await raw_server(answering(answer))
    client = RasaClient(url, timeout_s=10)
    try:
        with pytest.raises(error) as failed:
            await push(client)
        assert isinstance(failed.value, RetryableUpstreamError) is retryable
        assert str(failed.value) == f"Rasa answered {status}"
        assert failed.value.status == status
        assert failed.value.code == "é" * 150 + "x" * 50
        with pytest.raises(error):  # a complete answer: its connection is reused
            await push(client)
        assert [len(c.requests) for c in server.connections] == [2]
    finally:
        await client.close()


async def test_an_http_1_0_answer_ends_with_its_connection(raw_server: StartServer) -> None:
    """No Content-Length: the body runs to the end of the connection, which is not reused."""

    async def http_1_0(ex: Exchange) -> bool:
        fail = b"fail" in ex.body
        ex.writer.write(b"HTTP/1.0 502 Bad Gateway\r\n\r\nproxy down" if fail else
                        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}")  # fmt: skip
        return False

    server, url = await raw_server(http_1_0)
    failed = await failure_between_two(url)
    assert (failed.status, failed.code) == (502, "proxy down")
    assert [len(c.requests) for c in server.connections] == [1, 1, 1]


async def test_an_http_1_0_keep_alive_answer_with_a_length_is_reused(
    raw_server: StartServer,
) -> None:
    keep = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n{}"
    server, url = await raw_server(answering(keep))
    await pushed(url, "one", "two")
    assert [len(c.requests) for c in server.connections] == [2]


async def test_an_interim_100_answer_is_skipped(raw_server: StartServer) -> None:
    server, url = await raw_server(answering(b"HTTP/1.1 100 Continue\r\n\r\n" + OK))
    await pushed(url, "one", "two")
    assert [len(c.requests) for c in server.connections] == [2]


@pytest.mark.parametrize("status", [200, 500])
async def test_an_oversized_answer_is_not_read_past_its_bound(
    raw_server: StartServer, status: int
) -> None:
    """A 1 MiB answer of which 70 KiB ever come: the push ends on the status after 64 KiB,
    and the connection (its answer unfinished) is closed."""

    async def huge(ex: Exchange) -> bool:
        ex.writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 1048576\r\n\r\n" % status)
        ex.writer.write(b"{" + b"x" * (70 * 1024))
        if ex.connection == 0:
            await ex.reader.read()  # until the client closes
            return False
        return True

    server, url = await raw_server(huge)
    client = RasaClient(url, timeout_s=10)
    try:
        if status == 200:
            await push(client)
        else:
            with pytest.raises(RetryableUpstreamError) as failed:
                await push(client)
            assert failed.value.code == "{" + "x" * 199
        async with asyncio.timeout(10):
            await server.connections[0].done.wait()
    finally:
        await client.close()


@pytest.mark.parametrize(
    "answer",
    [b"HTTP/1.1 abc OK\r\n\r\n", b"SMTP ready\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"],
)  # fmt: skip
async def test_a_malformed_answer_is_retryable_and_its_connection_dropped(
    raw_server: StartServer, answer: bytes
) -> None:
    async def bad_first(ex: Exchange) -> bool:
        ex.writer.write(answer if ex.connection == 0 else OK)
        return True

    server, url = await raw_server(bad_first)
    client = RasaClient(url, timeout_s=10)
    try:
        with pytest.raises(RetryableUpstreamError, match="^Rasa unreachable: BadAnswer$"):
            await push(client, "one")
        await push(client, "two")
        assert [len(c.requests) for c in server.connections] == [1, 1]
    finally:
        await client.close()


async def test_a_connection_refused_is_retryable_and_the_token_is_nowhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there
    client = RasaClient(f"http://127.0.0.1:{port}", token=SecretStr("s3cret-token"))
    try:
        with pytest.raises(RetryableUpstreamError) as failed:
            await push(client)
        assert str(failed.value) == "Rasa unreachable: ConnectionRefusedError"
        chain = f"{failed.value!r} {failed.value.__cause__!r} {failed.value.__cause__}"
        assert "s3cret" not in chain and "s3cret" not in caplog.text
    finally:
        await client.close()


@pytest.mark.parametrize(
    "url",
    ["localhost:5005", "ftp://rasa:5005", "http://", "http://rasa:99999", "http://rasa:x",
     "http://[::1", "http://rasa..local:5005", "http://" + "r" * 64 + ".local",
     "http://u:p@rasa:5005", "http://rasa:5005/?token=t"],
)  # fmt: skip
async def test_a_base_url_that_is_not_http_fails_the_push_as_retryable(url: str) -> None:
    client = RasaClient(url)
    try:
        with pytest.raises(RetryableUpstreamError, match="^Rasa unreachable: BadURL$"):
            await push(client)
    finally:
        await client.close()


async def test_more_pushes_than_the_pool_bound_wait_for_a_connection(
    raw_server: StartServer,
) -> None:
    release = asyncio.Event()

    async def held(ex: Exchange) -> bool:
        await release.wait()
        ex.writer.write(OK)
        return True

    server, url = await raw_server(held)
    line = PushLine(url, timeout_s=10, limit=2)
    try:
        pushes = [asyncio.create_task(line.post(TARGET, b"[]")) for _ in range(3)]
        await server.wait_arrived(2)
        release.set()
        assert [await p for p in pushes] == [(200, b"{}")] * 3
        assert sorted(len(c.requests) for c in server.connections) == [1, 2]
    finally:
        await line.close()


async def test_waiting_for_a_pool_slot_counts_in_the_timeout(raw_server: StartServer) -> None:
    async def never(ex: Exchange) -> bool:
        await ex.reader.read()
        return False

    server, url = await raw_server(never)
    line = PushLine(url, timeout_s=0.5, limit=1)
    try:
        first = asyncio.create_task(line.post(TARGET, b"[]"))
        await server.wait_arrived(1)
        with pytest.raises(TimeoutError):
            await line.post(TARGET, b"[]")  # never got the slot
        with pytest.raises(TimeoutError):
            await first
        assert server.arrived == 1
    finally:
        await line.close()


async def test_a_cancelled_push_closes_its_connection_and_frees_its_slot(
    raw_server: StartServer,
) -> None:
    async def hold_first(ex: Exchange) -> bool:
        if ex.connection == 0:
            await ex.reader.read()  # until the client closes
            return False
        ex.writer.write(OK)
        return True

    server, url = await raw_server(hold_first)
    line = PushLine(url, timeout_s=10, limit=1)
    try:
        first = asyncio.create_task(line.post(TARGET, b"[]"))
        await server.wait_arrived(1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        async with asyncio.timeout(10):  # its connection was closed
            await server.connections[0].done.wait()
        assert await line.post(TARGET, b"[]") == (200, b"{}")  # the one slot is free again
        assert [len(c.requests) for c in server.connections] == [1, 1]
    finally:
        await line.close()


async def test_close_closes_the_idle_connections(raw_server: StartServer) -> None:
    server, url = await raw_server(answer_ok)
    client = RasaClient(url, timeout_s=10)
    await push(client)
    await client.close()
    async with asyncio.timeout(10):
        await server.connections[0].done.wait()


async def test_a_path_prefix_and_an_ipv6_host_make_the_request_line_and_host() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server = RawServer(answer_ok)
    try:
        url = await server.start("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    client = RasaClient(url + "/rasa/", token=SecretStr("t&k"), output_channel="socketio")
    try:
        await client.push_bot_message(SenderId("ü/1"), "hi", marker="m:0")
        head = server.connections[0].requests[0].split(b"\r\n")
        assert head[0] == (
            b"POST /rasa/conversations/%C3%BC%2F1/tracker/events?output_channel=socketio"
            b"&execute_side_effects=true&include_events=NONE&token=t%26k HTTP/1.1"
        )
        assert f"Host: {url.removeprefix('http://')}".encode() in head
        assert b"Content-Type: application/json" in head
    finally:
        await client.close()
        await server.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_pushes_verify_the_servers_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    stand_in = RasaStandIn()
    server = await serve_app(stand_in.app(), ssl=served)
    url = f"https://localhost:{server.port}"
    trusting = RasaClient(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
    default = RasaClient(url, timeout_s=10)
    try:
        await push(trusting, "one")
        await push(trusting, "two")
        assert stand_in.texts("ada") == ["one", "two"]
        with pytest.raises(RetryableUpstreamError, match="SSLCertVerificationError"):
            await push(default, "three")  # verification is on by default: a stranger's cert
        assert stand_in.texts("ada") == ["one", "two"]
    finally:
        await trusting.close()
        await default.close()
        await server.close()


async def test_a_connection_idle_longer_than_the_reuse_bound_is_not_reused(
    raw_server: StartServer,
) -> None:
    """Sanic closes a connection idle for 5 s; the line stops reusing one well before."""
    server, url = await raw_server(answer_ok)
    kept, stale = PushLine(url, timeout_s=10), PushLine(url, timeout_s=10, idle_reuse_s=0)
    try:
        for line in (kept, kept, stale, stale):
            assert await line.post(TARGET, b"[]") == (200, b"{}")
        assert [len(c.requests) for c in server.connections] == [2, 1, 1]
    finally:
        await kept.close()
        await stale.close()


async def test_a_connection_past_the_reuse_bound_is_closed_while_idle(
    raw_server: StartServer,
) -> None:
    """Not by the next push, which would close a whole pool gone stale in its own path."""
    server, url = await raw_server(answer_ok)
    line = PushLine(url, timeout_s=10, idle_reuse_s=0.05)
    try:
        assert await line.post(TARGET, b"[]") == (200, b"{}")
        async with asyncio.timeout(10):
            await server.connections[0].done.wait()  # closed by the line, nothing posted
        assert line._idle == []
    finally:
        await line.close()


async def test_the_reaper_closes_the_idle_connections_past_the_bound_only() -> None:
    line = PushLine("http://127.0.0.1:9", timeout_s=1, idle_reuse_s=4.0)
    now = asyncio.get_running_loop().time()
    conns = [_Connection() for _ in range(3)]
    for conn, idle_s in zip(conns, (10.0, 4.5, 1.0), strict=True):  # oldest first
        conn.idle_since = now - idle_s
    line._idle = list(conns)
    line._reap()
    assert line._idle == [conns[2]]
    # and it looks again once that one passes the bound
    assert line._reaper is not None
    assert line._reaper.when() == pytest.approx(conns[2].idle_since + 4.0, abs=0.1)
    await line.close()
    assert line._reaper is None


@pytest.mark.parametrize(
    ("start", "filler"),
    [(b"HTTP/1.1 200 OK\r\nX-Filler: ", b"a" * 4096),  # one endless header
     (b"HTTP/1.1 200 OK\r\n", b"X-A: 1\r\n" * 512),  # endless headers
     (b"", b"HTTP/1.1 100 Continue\r\n\r\n" * 128)],  # endless interim answers
)  # fmt: skip
async def test_an_endless_head_is_not_read_past_its_bound(
    raw_server: StartServer, start: bytes, filler: bytes
) -> None:
    """A broken server's head that never ends: llhttp keeps a header's bytes until its end,
    so the push must give up on the head's size, not wait for its timeout."""

    async def endless(ex: Exchange) -> bool:
        ex.writer.write(start)
        with contextlib.suppress(ConnectionError):
            for _ in range(16 * 1024 * 1024 // len(filler)):  # 16 MiB, then it stalls
                ex.writer.write(filler)
                await ex.writer.drain()
            await ex.reader.read()  # until the client closes
        return False

    server, url = await raw_server(endless)
    client = RasaClient(url, timeout_s=20)
    try:
        with pytest.raises(RetryableUpstreamError, match="^Rasa unreachable: BadAnswer$"):
            await push(client)
        async with asyncio.timeout(10):  # its connection was closed
            await server.connections[0].done.wait()
    finally:
        await client.close()


async def test_an_answer_whose_transfer_coding_is_not_chunked_ends_with_its_connection(
    raw_server: StartServer,
) -> None:
    """Transfer-Encoding without chunked last: the body runs to the end of the connection (RFC
    9112 6.3), so that end completes the answer; it is not a disconnection to retry."""

    async def identity(ex: Exchange) -> bool:
        ex.writer.write(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: gzip\r\n\r\nnope")
        return False

    server, url = await raw_server(identity)
    client = RasaClient(url, timeout_s=10)
    try:
        with pytest.raises(PermanentUpstreamError) as failed:
            await push(client)
        assert (failed.value.status, failed.value.code) == (400, "nope")
    finally:
        await client.close()


async def test_an_answer_before_the_request_is_written_whole_is_not_reused() -> None:
    """A server that answers before reading the body: the rest of it is still in our write
    buffer, and would reach the server ahead of the next request on that connection."""
    connections = 0

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client closes
        writer.close()

    server = await asyncio.start_server(early, "127.0.0.1", 0)
    line = PushLine(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout_s=10)
    try:
        assert await line.post(TARGET, b"[" + b"0" * (32 * 1024 * 1024) + b"]") == (413, b"")
        assert line._idle == []
        assert connections == 1
    finally:
        await line.close()
        server.close()


async def test_a_connection_left_with_unwritten_bytes_is_dropped_not_flushed() -> None:
    """A server that answers early and then never reads: closing the connection gracefully
    would wait for it to take the rest of the body, so the connection (and the body in its
    buffer) would outlive the push for as long as the server keeps it open."""
    stop = asyncio.Event()

    async def early_then_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
        await stop.wait()  # never reads the body
        writer.close()

    server = await asyncio.start_server(early_then_silent, "127.0.0.1", 0)
    line = PushLine(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout_s=10)
    made: list[pushline._Connection] = []
    connect = line._connect

    async def recorded() -> pushline._Connection:
        made.append(await connect())
        return made[-1]

    line._connect = recorded  # type: ignore[method-assign]
    try:
        assert await line.post(TARGET, b"[" + b"0" * (32 * 1024 * 1024) + b"]") == (413, b"")
        await asyncio.wait_for(made[0].gone, 2)  # dropped at once, its buffer with it
    finally:
        stop.set()
        await line.close()
        server.close()
