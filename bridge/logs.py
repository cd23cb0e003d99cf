"""Structured logging on the standard library: one JSON object per line, in every process
(serve, the CLI, the simulator).

Call sites log an event name and ids (`extra={"sender": ..., "conversation": ...}`); message
text and secrets are never passed at info level or above.

- A sender id can be a phone number: above debug, every `sender` field is replaced by a keyed
  hash (`mask_sender`), the same in every process that shares the key, so lines still correlate
  (and `handoff-bridge status --json` prints each sender's `log_id`).
- An exception keeps its frames (file, line, function) at every level; its message, which may
  carry personal data, only at debug.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import sys
import time
import traceback
from types import TracebackType
from typing import Any

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# Fields that hold a sender id, masked above debug.
SENDER_FIELDS = frozenset({"sender"})

# Used when no key is configured: still stable across processes, but then anyone can hash a
# candidate phone number and compare; `serve` derives a secret key from its settings instead.
_DEFAULT_KEY = b"handoff-bridge log ids"

# Masked ids kept per key, so a sender's every line does not pay an HMAC. Emptied whole when
# full: 4,096 senders covers the live handoffs of a busy deployment (one line per event, the
# same few senders over and over) in well under a megabyte; beyond that, a miss costs what no
# cache would.
_MASKS_LIMIT = 4096


class _Masks:
    """The key and the ids masked with it, replaced together so a line never mixes two keys."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.by_sender: dict[str, str] = {}


_masks = _Masks(_DEFAULT_KEY)


def set_id_key(key: bytes | None) -> None:
    """The key of `mask_sender` (None: the public default)."""
    global _masks
    _masks = _Masks(key or _DEFAULT_KEY)


def derive_id_key(secret: str) -> bytes:
    """A log-id key derived from a deployment secret (never the secret itself)."""
    return hmac.new(secret.encode("utf-8"), b"handoff-bridge log ids v1", hashlib.sha256).digest()


def mask_sender(sender: object) -> str:
    """The sender id as logged above debug: `s-` and 12 hex digits of an HMAC-SHA256."""
    masks = _masks
    text = str(sender)
    masked = masks.by_sender.get(text)
    if masked is None:
        masked = "s-" + hmac.digest(masks.key, text.encode("utf-8"), "sha256")[:6].hex()
        if len(masks.by_sender) >= _MASKS_LIMIT:
            masks.by_sender.clear()
        masks.by_sender[text] = masked
    return masked


def frames(tb: TracebackType | None) -> list[str]:
    """`file:line in function` for each frame, innermost last: where, never what."""
    return [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(tb)]


# One encoder for every line: `json.dumps` with these options builds a new one per call.
_encode = json.JSONEncoder(default=str, ensure_ascii=False).encode

# Record shapes (the keys of a record, in order) whose extra fields a formatter keeps: a call
# site passes the same `extra` keys every time, so a process sees a few dozen shapes. Emptied
# whole when full, like the masked ids.
_SHAPES_LIMIT = 256


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        # The timestamp's text up to its second, for the second it names: lines come many
        # to a second, and `strftime` is the dearest part of the timestamp.
        self._second: tuple[int, str] = (-1, "")
        # Per record shape, its extra fields in order, each with whether it holds a sender.
        self._extras: dict[tuple[str, ...], tuple[tuple[str, bool], ...]] = {}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": f"{self._up_to_second(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        debug = record.levelno <= logging.DEBUG
        fields = record.__dict__
        for key, sender in self._extra_fields(fields):
            value = fields[key]
            out[key] = mask_sender(value) if sender and value is not None and not debug else value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            out["error"] = type(exc).__name__
            out["frames"] = frames(record.exc_info[2])
            if debug:
                out["exc"] = self.formatException(record.exc_info)
        return _encode(out)

    def _extra_fields(self, fields: dict[str, Any]) -> tuple[tuple[str, bool], ...]:
        """The fields that came in through `extra=` (not standard, not private), in the
        record's order, each with whether it holds a sender id: worked out once per shape
        rather than by testing every standard attribute of every record."""
        shape = tuple(fields)
        extras = self._extras.get(shape)
        if extras is None:
            extras = tuple(
                (key, key in SENDER_FIELDS)
                for key in shape
                if key not in _STANDARD and not key.startswith("_")
            )
            if len(self._extras) >= _SHAPES_LIMIT:
                self._extras.clear()
            self._extras[shape] = extras
        return extras

    def _up_to_second(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return cached[1]


def configure(level: str = "INFO", *, id_key: bytes | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    set_id_key(id_key)
    _skip_unused_record_fields()
    # aiohttp's access log would print every webhook request; ours is enough.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def _skip_unused_record_fields() -> None:
    """Stop the standard library filling, for every record, fields no line of ours shows:
    where the call was made (a walk up the stack), the thread, process and task.
    An exception's frames are unaffected: they come from its traceback."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False
