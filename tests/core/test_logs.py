"""Logs an operator can use: masked sender ids that correlate, frames kept at every level."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

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
