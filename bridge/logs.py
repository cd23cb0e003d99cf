"""Structured logging on the standard library: one JSON object per line.

Call sites log an event name and ids (`extra={"sender": ..., "conversation": ...}`); message
text and secrets are never passed at info level or above.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.levelno <= logging.DEBUG:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_info and record.exc_info[1] is not None:
            # Above debug, the exception's type only: its text may carry personal data.
            out["error"] = type(record.exc_info[1]).__name__
        return json.dumps(out, default=str, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log would print every webhook request; ours is enough.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
