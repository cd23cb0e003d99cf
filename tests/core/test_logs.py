"""Logs an operator can use: masked sender ids that correlate, frames kept at every level."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from bridge import logs
from bridge.settings import Settings


def _line(level: int, exc: BaseException | None = None, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("bridge.x", level, __file__, 1, "something_happened", None, None)
    if exc is not None:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.__dict__.update(extra)
    return dict(json.loads(logs.JsonFormatter().format(record)))


def _raise() -> None:
    raise ValueError("card 4111 1111")


def test_sender_ids_are_masked_above_debug_the_same_way_everywhere() -> None:
    logs.set_id_key(logs.derive_id_key("deployment-secret"))
    try:
        info = _line(logging.INFO, sender="+4915112345678", conversation="c1")
        assert info["sender"] == logs.mask_sender("+4915112345678") != "+4915112345678"
        assert str(info["sender"]).startswith("s-") and info["conversation"] == "c1"
        assert _line(logging.ERROR, sender="+4915112345678")["sender"] == info["sender"]
        assert _line(logging.DEBUG, sender="+4915112345678")["sender"] == "+4915112345678"
        # another process with the same key hashes alike, so lines correlate across processes
        code = (
            "from bridge import logs; logs.set_id_key(logs.derive_id_key('deployment-secret'));"
            "print(logs.mask_sender('+4915112345678'))"
        )
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert other.stdout.strip() == info["sender"]
        logs.set_id_key(logs.derive_id_key("another-deployment"))
        assert logs.mask_sender("+4915112345678") != info["sender"]
    finally:
        logs.set_id_key(None)


def test_the_key_comes_from_the_settings() -> None:
    a = Settings(eightbyeight_api_key="k1")  # type: ignore[call-arg]
    b = Settings(eightbyeight_api_key="k1")  # type: ignore[call-arg]
    c = Settings(eightbyeight_api_key="k1", log_id_key="own")  # type: ignore[call-arg]
    assert a.log_id_secret() == b.log_id_secret() != c.log_id_secret()
    assert b"k1" not in (a.log_id_secret() or b"")


def test_errors_keep_their_frames_at_every_level_but_their_text_only_at_debug() -> None:
    try:
        _raise()
    except ValueError as exc:
        caught = exc
    for level in (logging.WARNING, logging.ERROR, logging.INFO):
        line = _line(level, caught)
        assert line["error"] == "ValueError"
        frames = line["frames"]
        assert isinstance(frames, list) and frames[-1].endswith("in _raise")
        assert f"{__file__}:" in frames[-1]
        assert "4111" not in json.dumps(line)
    assert "4111" in str(_line(logging.DEBUG, caught)["exc"])


def _record(created: float, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("bridge.relay.deliver", level, "x.py", 1, "relay_processed", None, None)  # fmt: skip
    record.created, record.msecs = created, float(int((created - int(created)) * 1000))
    record.__dict__.update(extra)
    return record


def test_a_line_is_byte_for_byte_what_it_was() -> None:
    # Pinned from the formatter before its caches: the masked id, the timestamp, the order of
    # the fields, non-ASCII kept as is, an unknown type through str().
    logs.set_id_key(logs.derive_id_key("deployment-secret"))
    try:
        record = _record(1700000000.987654, sender="+4915112345678", event_id="1700000000000-0",
                         conversation="c-ü", outcome="delivered", run=2, when=b"x")  # fmt: skip
        assert logs.JsonFormatter().format(record) == (
            '{"ts": "2023-11-14T22:13:20.987Z", "level": "info", "logger": "bridge.relay.deliver", '
            '"event": "relay_processed", "sender": "s-b053f722315d", "event_id": "1700000000000-0", '
            '"conversation": "c-ü", "outcome": "delivered", "run": 2, "when": "b\'x\'"}'
        )
    finally:
        logs.set_id_key(None)
    assert logs.mask_sender(42) == logs.mask_sender("42") == "s-b81704196db1"


def test_one_formatter_stamps_each_line_with_its_own_second() -> None:
    formatter = logs.JsonFormatter()
    stamps = [
        json.loads(formatter.format(_record(created)))["ts"]
        for created in (1700000000.5, 1700000000.75, 1700000001.002, 1699999999.0)
    ]
    assert stamps == [
        "2023-11-14T22:13:20.500Z",
        "2023-11-14T22:13:20.750Z",
        "2023-11-14T22:13:21.002Z",
        "2023-11-14T22:13:19.000Z",  # a clock stepped back
    ]


def test_each_record_shows_its_own_extra_fields_in_order_within_a_bound() -> None:
    formatter = logs.JsonFormatter()

    def extras(record: logging.LogRecord) -> dict[str, object]:
        line = json.loads(formatter.format(record))
        return {k: v for k, v in line.items() if k not in ("ts", "level", "logger", "event")}

    assert list(extras(_record(1.0, b=1, a=2, _private=3)).items()) == [("b", 1), ("a", 2)]
    assert list(extras(_record(1.0, a=2, b=1)).items()) == [("a", 2), ("b", 1)]
    # the same keys in another order are another shape (a cache keyed by the set would not see it)
    assert list(extras(_record(1.0, b=1, a=2)).items()) == [("b", 1), ("a", 2)]
    assert extras(_record(1.0)) == {}
    # an attribute set after the record was made (a filter's, say) is a field like any other
    record = _record(1.0, sender="+4915112345678")
    record.added = "later"
    assert extras(record) == {"sender": logs.mask_sender("+4915112345678"), "added": "later"}
    for n in range(logs._SHAPES_LIMIT + 10):
        assert extras(_record(1.0, **{f"k{n}": n})) == {f"k{n}": n}
    assert 0 < len(formatter._extras) <= logs._SHAPES_LIMIT
    assert extras(_record(1.0, b=1, a=2)) == {"b": 1, "a": 2}


def test_masked_ids_are_remembered_within_a_bound() -> None:
    logs.set_id_key(logs.derive_id_key("bounded"))
    try:
        first = logs.mask_sender("+491510")
        for n in range(logs._MASKS_LIMIT + 10):
            logs.mask_sender(f"+4916{n}")
        assert 0 < len(logs._masks.by_sender) <= logs._MASKS_LIMIT
        assert logs.mask_sender("+491510") == first
        logs.set_id_key(logs.derive_id_key("bounded"))  # the same key again: the same ids
        assert logs.mask_sender("+491510") == first
    finally:
        logs.set_id_key(None)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_serve_s_configuration_writes_the_same_lines_and_skips_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream, kept = io.StringIO(), _Keep()
    monkeypatch.setattr(sys, "stderr", stream)
    for flag in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks"):
        if hasattr(logging, flag):  # put back as they were after the test
            monkeypatch.setattr(logging, flag, getattr(logging, flag))
    root, access = logging.getLogger(), logging.getLogger("aiohttp.access")
    saved = root.handlers[:], root.level, access.level
    log = logging.getLogger("bridge.relay.deliver")
    try:
        logs.configure("INFO", id_key=logs.derive_id_key("deployment-secret"))
        root.addHandler(kept)
        log.info("relay_processed", extra={"sender": "+4915112345678", "run": 1})
        try:
            _raise()
        except ValueError:
            log.warning("push_failed", exc_info=True)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        access.setLevel(saved[2])
        logs.set_id_key(None)
    processed, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert {k: v for k, v in processed.items() if k != "ts"} == {
        "level": "info", "logger": "bridge.relay.deliver", "event": "relay_processed",
        "sender": "s-b053f722315d", "run": 1,
    }  # fmt: skip
    assert failed["error"] == "ValueError" and failed["frames"][-1].endswith("in _raise")
    assert "4111" not in json.dumps(failed)
    # No record looked up its caller, thread or process: no line shows them.
    assert [(r.funcName, r.thread, r.process) for r in kept.records] == [
        ("(unknown function)", None, None)
    ] * 2
