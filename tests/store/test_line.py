"""The store's hot path to one Redis (bridge/store/line.py), against the real Redis and the
embedded one: replies in order, errors in place, connections dropped unless clean, bounded."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import hiredis
import pytest
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.connection import AbstractConnection

from bridge.store import line as line_module
from bridge.store.embedded import embedded_client, redis_client
from bridge.store.line import Line
from tests.support.own_redis import OwnRedis

EMBEDDED = "embedded"


@pytest.fixture(params=["redis", EMBEDDED])
def url(request: pytest.FixtureRequest) -> str:
    """The real Redis's URL, or EMBEDDED."""
    if request.param == EMBEDDED:
        return EMBEDDED
    return str(request.getfixturevalue("real_redis_url"))


@pytest.fixture
async def client(url: str) -> AsyncIterator[aioredis.Redis]:
    made = embedded_client() if url == EMBEDDED else redis_client(url)
    assert isinstance(made, aioredis.Redis)
    made.backend = url  # type: ignore[attr-defined]
    yield made
    await made.aclose()


@pytest.fixture
def key(key_prefix: str) -> str:
    return f"{key_prefix}line:{secrets.token_hex(4)}"


def real_only(client: aioredis.Redis, why: str) -> None:
    if client.backend == EMBEDDED:  # type: ignore[attr-defined]
        pytest.skip(why)


async def test_batch_runs_in_order_and_keeps_reply_errors_in_place(
    client: aioredis.Redis, key: str
) -> None:
    line = Line.of(client)
    replies = await line.batch([["SET", key, "1"], ["HGET", key, "f"], ["INCR", key]])
    assert replies[0] is True or replies[0] == "OK"
    assert isinstance(replies[1], rexc.ResponseError)  # WRONGTYPE
    assert replies[2] == 2
    assert await line.execute("GET", key) == "2"
    with pytest.raises(rexc.ResponseError):
        await line.execute("HGET", key, "f")
    await line.execute("DEL", key)
    await line.close()


async def test_callers_share_one_connection(client: aioredis.Redis) -> None:
    line = Line.of(client)
    ids = await asyncio.gather(*(line.execute("CLIENT", "ID") for _ in range(20)))
    assert len(set(ids)) == 1
    assert line.connections == 1
    await line.close()


async def test_concurrent_callers_each_get_their_own_replies(
    client: aioredis.Redis, key: str
) -> None:
    line = Line.of(client)
    got = await asyncio.gather(
        *(line.batch([["ECHO", f"{i}a"], ["ECHO", f"{i}b"]]) for i in range(200))
    )
    assert got == [[f"{i}a", f"{i}b"] for i in range(200)]
    await line.close()


async def test_a_caller_that_gives_up_leaves_the_next_its_own_reply(
    client: aioredis.Redis, key: str
) -> None:
    """The cancelled command's reply still comes, and is dropped: never handed to the next."""
    real_only(client, "fakeredis answers BLPOP at once: nothing to cancel midway")
    line = Line.of(client)
    blocked = asyncio.create_task(line.execute("BLPOP", key, 5))
    await _blocked_on(client)  # a signal: Redis says the BLPOP is waiting
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    mine = asyncio.create_task(line.execute("ECHO", "mine"))
    await client.rpush(key, "late")  # the cancelled BLPOP's reply, then ECHO's
    assert await mine == "mine"
    await client.delete(key)
    await line.close()


async def _answers_the_handshake_only(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A server that says OK to each command of the connection's handshake, then to nothing."""
    try:
        while data := await reader.read(65536):
            if b"PING" in data:
                continue  # silence from here on
            commands = sum(1 for line in data.split(b"\r\n") if line.startswith(b"*"))
            writer.write(b"+OK\r\n" * commands)
    finally:
        writer.close()


async def test_a_server_that_does_not_answer_fails_the_callers_in_time() -> None:
    silent = await asyncio.start_server(_answers_the_handshake_only, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    line = Line.of(client, reply_timeout_s=0.2)
    async with asyncio.timeout(10):
        with pytest.raises(rexc.TimeoutError):
            await line.execute("PING")
    assert line.connections == 0
    await line.close()
    silent.close()
    await client.aclose()


async def test_callers_past_the_limit_wait_then_fail_like_a_full_pool(
    client: aioredis.Redis, key: str
) -> None:
    real_only(client, "fakeredis answers BLPOP at once: nothing holds the connection")
    line = Line.of(client, limit=1, wait_s=0.3)
    holder = asyncio.create_task(line.execute("BLPOP", key, 5))
    await _blocked_on(client)
    started = time.monotonic()
    with pytest.raises(rexc.ConnectionError, match="no room"):
        await line.execute("ECHO", "x")
    assert time.monotonic() - started < 0.3 * 1.8  # one wait: a full line is not retried
    await client.rpush(key, "v")
    assert await holder == [key, "v"]
    assert await line.execute("ECHO", "y") == "y"  # the slot came back
    await line.close()


async def test_a_connection_killed_between_uses_is_replaced(client: aioredis.Redis) -> None:
    real_only(client, "fakeredis has no CLIENT KILL")
    line = Line.of(client)
    first = await line.execute("CLIENT", "ID")
    await client.execute_command("CLIENT", "KILL", "ID", first)
    second = await line.execute("CLIENT", "ID")  # one retry, on a fresh connection
    assert second != first
    await line.close()


async def test_no_server_is_a_connection_error() -> None:
    client = redis_client("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert isinstance(client, aioredis.Redis)
    with pytest.raises(rexc.ConnectionError):
        await Line.of(client).execute("PING")
    await client.aclose()


async def _blocked_on(client: aioredis.Redis) -> None:
    """Until Redis lists a client blocked in BLPOP (this test's: keys are the test's own)."""
    async with asyncio.timeout(10):
        # Polled: Redis has no event for it.
        while "cmd=blpop" not in str(await client.execute_command("CLIENT", "LIST")):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A redis-server of this test's own (to stop, or to start with a password)."""
    if not OwnRedis.available():
        pytest.skip("no redis-server")
    server = OwnRedis("--requirepass", "s3cret")
    server.start()
    yield server
    server.stop()


def own_client(server: OwnRedis, db: int = 0) -> aioredis.Redis:
    made = redis_client(f"redis://:s3cret@127.0.0.1:{server.port}/{db}")
    assert isinstance(made, aioredis.Redis)
    return made


async def test_the_line_logs_in_and_selects_the_clients_db(own_redis: OwnRedis) -> None:
    client = own_client(own_redis, db=3)
    line = Line.of(client)
    await line.execute("SET", "line-db", "3")
    assert await client.get("line-db") == "3"
    await line.close()
    await client.aclose()


async def test_an_empty_batch_is_answered_at_once_and_takes_no_reply(
    client: aioredis.Redis,
) -> None:
    line = Line.of(client, reply_timeout_s=60)
    async with asyncio.timeout(5):
        assert await line.batch([]) == []
        assert await line.execute("ECHO", "next") == "next"
    await line.close()


async def test_a_closed_line_opens_no_connection(client: aioredis.Redis) -> None:
    line = Line.of(client)
    await line.execute("PING")
    await line.close()
    with pytest.raises(rexc.ConnectionError):
        await line.execute("PING")
    assert line.connections == 0


async def test_a_caller_in_flight_when_the_line_closes_does_not_reopen_it(
    client: aioredis.Redis,
) -> None:
    line = Line.of(client)
    await line.execute("PING")
    caller = asyncio.create_task(line.execute("ECHO", "x"))
    await asyncio.sleep(0)  # one turn: the caller's request is in line (Redis answers later)
    assert not caller.done()
    await line.close()
    with pytest.raises(rexc.ConnectionError):
        await caller  # its retry finds the line closed
    assert line.connections == 0


async def test_a_close_while_connecting_leaves_no_connection(client: aioredis.Redis) -> None:
    entered, go_on = asyncio.Event(), asyncio.Event()
    made: list[AbstractConnection] = []
    pool = client.connection_pool

    def connect() -> AbstractConnection:
        conn = pool.connection_class(**pool.connection_kwargs)
        handshake = conn.connect

        async def held() -> None:
            entered.set()
            await go_on.wait()
            await handshake()  # type: ignore[no-untyped-call]

        conn.connect = held  # type: ignore[method-assign]
        made.append(conn)
        return conn

    line = Line(connect)
    caller = asyncio.create_task(line.execute("PING"))
    await entered.wait()  # the caller is inside the opening
    await line.close()
    go_on.set()
    with pytest.raises(rexc.ConnectionError):
        await caller
    assert line.connections == 0
    assert made and not any(conn.is_connected for conn in made)


async def test_callers_waiting_for_a_connection_share_one_attempt(
    own_redis: OwnRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis stopped: each caller fails in about one reply timeout plus one connect timeout,
    not one connect timeout per caller before it (connects one after another)."""
    monkeypatch.setattr(line_module, "CONNECT_TIMEOUT_S", 0.1)
    client = own_client(own_redis)
    line = Line.of(client, reply_timeout_s=0.2)
    await line.execute("PING")
    own_redis.pause()
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(line.execute("PING") for _ in range(20)), return_exceptions=True
    )
    took = time.monotonic() - started
    assert all(isinstance(o, rexc.TimeoutError | TimeoutError) for o in outcomes), outcomes
    # At worst: the watch's period and the reply timeout, then two openings (one per try).
    assert took < line_module.WATCH_EVERY_S + 0.2 + 2 * (0.1 + 0.2) + 1.0, took
    own_redis.resume()
    assert await line.execute("PING") == "PONG"  # the line recovers once Redis answers again
    await line.close()
    await client.aclose()


async def test_a_command_that_cannot_be_sent_fails_its_caller_only(client: aioredis.Redis) -> None:
    """A bug in one caller's arguments is that caller's, not Redis unavailable for the callers
    whose commands would have gone out in the same write."""
    line = Line.of(client)
    await line.execute("PING")  # open: the rest go out in one write
    outcomes = await asyncio.gather(
        line.execute("ECHO", "before"),
        line.execute("ECHO", None),
        line.execute("ECHO", "after"),
        return_exceptions=True,
    )
    assert outcomes[0] == "before" and outcomes[2] == "after", outcomes
    assert isinstance(outcomes[1], TypeError), outcomes
    assert line.connections == 1  # nothing broke the order of the replies
    await line.close()


async def test_callers_past_the_limit_get_room_in_turn(client: aioredis.Redis) -> None:
    line = Line.of(client, limit=2, wait_s=60)
    async with asyncio.timeout(10):  # a room never handed on would hang them
        got = await asyncio.gather(*(line.execute("ECHO", str(i)) for i in range(50)))
    assert got == [str(i) for i in range(50)]
    await line.close()


async def test_room_handed_to_a_caller_that_gives_up_goes_to_the_next() -> None:
    room = line_module._Room(1, wait_s=60)
    assert room.take()
    assert not room.take()
    first = asyncio.create_task(room.wait())
    gone = asyncio.create_task(room.wait())
    second = asyncio.create_task(room.wait())
    await asyncio.sleep(0)  # a turn of the loop: each task runs to its wait, in that order
    assert len(room._waiters) == 3
    room.give_back()  # to `first`, which gives up before it runs
    first.cancel()
    gone.cancel()  # still in line when `first` passes the room on
    with pytest.raises(asyncio.CancelledError):
        await first
    async with asyncio.timeout(5):  # a room lost with `first` would leave it waiting
        await second  # past `gone`, which gave up
    assert not room.take()  # `second` holds the one room
    room.give_back()
    assert room.take()


async def test_a_caller_that_waited_for_room_in_vain_leaves_none_taken() -> None:
    room = line_module._Room(1, wait_s=0.01)
    assert room.take()
    with pytest.raises(rexc.ConnectionError, match="no room"):
        await room.wait()
    room.give_back()
    assert room.take()


def _counting_writes(client: aioredis.Redis, writes: list[bytes]) -> Line:
    """A line whose connection records every write to its socket."""
    pool = client.connection_pool

    def connect() -> AbstractConnection:
        conn = pool.connection_class(**pool.connection_kwargs)
        opened = conn.connect

        async def connect_counted() -> None:
            await opened()  # type: ignore[no-untyped-call]
            stream = conn._writer
            assert stream is not None
            writelines = stream.writelines

            def counted(data: Any) -> None:
                writes.append(b"".join(data))
                writelines(data)

            stream.writelines = counted  # type: ignore[method-assign]

        conn.connect = connect_counted  # type: ignore[method-assign]
        return conn

    return Line(connect)


async def _open_counting_writes(client: aioredis.Redis) -> tuple[Line, list[bytes]]:
    """A counting line (`_counting_writes`), its connection open (so the next turn's callers
    find it open), and no write counted yet."""
    writes: list[bytes] = []
    line = _counting_writes(client, writes)
    await line.execute("PING")
    writes.clear()
    return line, writes


async def test_the_commands_of_one_turn_go_out_in_one_write(client: aioredis.Redis) -> None:
    """On an idle connection the first request of a turn goes out at once (no other is likely
    to come); the rest of the turn, behind it, in one write."""
    line, writes = await _open_counting_writes(client)
    got = await asyncio.gather(
        line.execute("ECHO", "a"),
        line.batch([["ECHO", "b"], ["ECHO", "c"]]),
        line.execute("ECHO", "d"),
    )
    assert got == ["a", ["b", "c"], "d"]
    assert len(writes) == 2, writes
    assert b"$1\r\na" in writes[0] and b"$1\r\nd" in writes[1], writes
    await line.close()


async def test_a_lone_request_on_an_idle_line_is_written_in_its_callers_turn(
    client: aioredis.Redis,
) -> None:
    line, writes = await _open_counting_writes(client)
    pending = asyncio.ensure_future(line.execute("ECHO", "now"))
    await asyncio.sleep(0)  # the caller's turn: it submitted, and nothing else ran
    assert len(writes) == 1  # written already, not left to a writer task's turn
    assert await pending == "now"
    await line.close()


async def test_a_script_redis_does_not_have_is_a_noscript_error_in_its_place(
    client: aioredis.Redis,
) -> None:
    """What the store's reload after a flush goes by (`RedisStore._in_order`)."""
    line = Line.of(client)
    replies = await line.batch([["EVALSHA", "0" * 40, 0], ["ECHO", "next"]])
    assert isinstance(replies[0], rexc.NoScriptError), replies
    assert replies[1] == "next"
    await line.close()


def test_redis_pys_connections_are_read_through_their_parser() -> None:
    """Not through `read_response`'s per-reply wrapping (CPU per command)."""
    client = redis_client("redis://127.0.0.1:6379/0")
    assert isinstance(client, aioredis.Redis)
    conn = client.connection_pool.make_connection()
    assert line_module._reader(conn).__self__ is conn._parser  # type: ignore[attr-defined]
    fake = embedded_client().connection_pool.make_connection()
    assert line_module._reader(fake) == fake.read_response


async def test_a_reader_that_cannot_start_fails_its_callers_at_once(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Say a redis-py whose connections have no parser where the line looks for one (read by
    a task: the transport is not taken)."""

    def broken(conn: AbstractConnection) -> Any:
        raise AttributeError("_parser")

    monkeypatch.setattr(line_module, "_read_in_transport", lambda conn, link: False)
    monkeypatch.setattr(line_module, "_reader", broken)
    line = Line.of(client, reply_timeout_s=60)  # not the watch: the reader's own failure
    async with asyncio.timeout(10):
        with pytest.raises(rexc.ConnectionError):
            await line.execute("PING")
    await line.close()


async def test_a_caller_that_gives_up_keeps_its_room_until_its_request_is_answered(
    client: aioredis.Redis, key: str
) -> None:
    """Room bounds requests in flight, not callers: a cancelled caller's request stays in line
    (its reply is read, then dropped), so its room comes back with that reply."""
    real_only(client, "fakeredis answers BLPOP at once: nothing to cancel midway")
    line = Line.of(client, limit=1, wait_s=0.2)
    blocked = asyncio.create_task(line.execute("BLPOP", key, 2))
    await _blocked_on(client)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    # The BLPOP is still in flight: a second request now would be the second of a limit of 1.
    with pytest.raises(rexc.ConnectionError, match="no room"):
        await line.execute("ECHO", "x")
    await client.rpush(key, "late")  # the BLPOP's reply comes, and is dropped: room again
    assert await line.execute("ECHO", "y") == "y"
    await client.delete(key)
    await line.close()


async def test_a_redis_py_connection_is_read_in_its_transport(client: aioredis.Redis) -> None:
    """Each reply resolves its caller as it arrives (no reader task); fakeredis's connections,
    which have no transport, are read by a task."""
    line = Line.of(client)
    assert await line.execute("ECHO", "x") == "x"
    link = line._link
    assert link is not None
    if client.backend == EMBEDDED:  # type: ignore[attr-defined]
        assert link._reader is not None
    else:
        assert link._reader is None
        protocol = link._conn._writer.transport.get_protocol()  # type: ignore[union-attr]
        assert isinstance(protocol, line_module._Replies)
    await line.close()


Respond = Callable[[list[bytes]], bytes]


@contextlib.asynccontextmanager
async def _scripted(respond: Respond, chunk: int = 65536) -> AsyncIterator[aioredis.Redis]:
    """A client of a server that says OK to the connection's handshake and answers every other
    command with `respond(command)`, written `chunk` bytes at a time (each flushed alone)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    handshake = command[0].upper() in (b"CLIENT", b"SELECT", b"HELLO", b"AUTH")
                    answer = b"+OK\r\n" if handshake else respond(command)
                    for at in range(0, len(answer), chunk):
                        writer.write(answer[at : at + chunk])
                        await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()
        server.close()


def _echo(command: list[bytes]) -> bytes:
    words = command[1:]
    return b"*%d\r\n" % len(words) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in words)


async def test_replies_that_arrive_a_byte_at_a_time_are_each_their_callers() -> None:
    async with _scripted(_echo, chunk=1) as client:
        line = Line.of(client)
        got = await asyncio.gather(
            line.execute("ECHO", "a", "bc"), line.batch([["ECHO", "d"], ["ECHO", "é"]])
        )
        assert got == [["a", "bc"], [["d"], ["é"]]]
        assert line._link is not None and line._link._reader is None  # read in the transport
        await line.close()


async def test_an_error_that_says_the_connection_is_unusable_fails_it() -> None:
    """As redis-py does (-LOADING: a connection error, retried once on a new connection), while
    an ordinary reply error is its caller's reply."""
    opened: list[bytes] = []

    def loading(command: list[bytes]) -> bytes:
        opened.append(command[0])
        if command[0] == b"GET":
            return b"-LOADING Redis is loading the dataset in memory\r\n"
        return b"-ERR no such thing\r\n"

    async with _scripted(loading) as client:
        line = Line.of(client)
        with pytest.raises(rexc.ResponseError, match="no such thing"):
            await line.execute("ECHO", "x")
        assert line.connections == 1
        with pytest.raises(rexc.BusyLoadingError):
            await line.execute("GET", "k")
        assert opened == [b"ECHO", b"GET", b"GET"]  # the GET once more, on a new connection
        assert line.connections == 0
        await line.close()


async def test_a_held_request_goes_out_with_the_next_one_in_one_write(
    client: aioredis.Redis,
) -> None:
    """In order: the held one first, each its own reply."""
    line, writes = await _open_counting_writes(client)
    held = asyncio.ensure_future(line.batch([["ECHO", "held"]], hold_s=60))
    await asyncio.sleep(0)  # its caller's turn: it is in line, held
    assert await line.execute("ECHO", "next") == "next"
    assert await held == ["held"]
    assert len(writes) == 1, writes
    assert writes[0].index(b"held") < writes[0].index(b"next")
    await line.close()


async def test_a_held_request_alone_goes_out_once_its_hold_is_over(client: aioredis.Redis) -> None:
    line, writes = await _open_counting_writes(client)
    async with asyncio.timeout(10):
        assert await line.batch([["ECHO", "alone"]], hold_s=0.01) == ["alone"]
    assert len(writes) == 1
    await line.close()


async def test_a_held_request_fails_with_the_line_it_waits_on(client: aioredis.Redis) -> None:
    line = Line.of(client)
    await line.execute("PING")
    held = asyncio.ensure_future(line.batch([["ECHO", "held"]], hold_s=60))
    await asyncio.sleep(0)  # its caller's turn: it is in line, held
    await line.close()
    async with asyncio.timeout(10):
        with pytest.raises(rexc.ConnectionError):
            await held
