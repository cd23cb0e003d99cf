"""Reading a rasa-sdk action call: bytes -> a checked dict, or a 400 that says what is wrong.

rasa-sdk's executor and the actions trust the call's shape (`tracker["slots"].get(...)`,
iterating `events`, ...); a call from anything but Rasa could break them anywhere and end in a
500. So the call is checked here first: JSON with finite numbers only, bounded nesting, text
that is valid Unicode (it goes on to Redis and 8x8 as UTF-8), and the types Rasa sends at every
level rasa-sdk and the actions read. Extra fields are kept: Rasa versions add some.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

MAX_DEPTH = 100  # Rasa's deepest: domain > responses > variations > buttons > payload, ~10


class BadCall(ValueError):
    """The body is not a usable action call; the message says why (no values echoed)."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Intent(_Open):
    name: str | None = None
    confidence: float | int | None = None


class _ParseData(_Open):
    intent: _Intent | None = None
    text: str | None = None
    entities: list[dict[str, Any]] = []


class _Message(_ParseData):
    metadata: dict[str, Any] | None = None


class _Event(_Open):
    event: str
    text: str | None = None
    name: str | None = None
    timestamp: float | int | None = None
    parse_data: _ParseData | None = None
    metadata: dict[str, Any] | None = None


class _Slots(_Open):
    # Rasa's own slot (type any, a dict from the channel); the actions merge it as a mapping.
    session_started_metadata: dict[str, Any] | None = None


class _Tracker(_Open):
    sender_id: str
    slots: _Slots = _Slots()
    latest_message: _Message | None = None
    events: list[_Event] = []
    paused: bool = False
    followup_action: str | None = None
    active_loop: dict[str, Any] | None = None
    latest_action_name: str | None = None
    latest_action: dict[str, Any] | None = None
    latest_input_channel: str | None = None


class _Call(_Open):
    next_action: str
    sender_id: str | None = None
    version: str | None = None
    tracker: _Tracker
    domain: dict[str, Any] | None = None
    domain_digest: str | None = None


def parse_call(body: bytes) -> dict[str, Any]:
    """The checked call as plain JSON data (what rasa-sdk's executor takes)."""
    call = _json(body)
    if not isinstance(call, dict):
        raise BadCall("body is not a JSON object")
    _check_tree(call)
    try:
        _Call.model_validate(call)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "body"
        raise BadCall(f"{where}: {err['msg']}") from None
    return call


def _json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except UnicodeDecodeError:
        raise BadCall("body is not UTF-8") from None
    except RecursionError:
        raise BadCall(f"body is nested more than {MAX_DEPTH} levels deep") from None
    except BadCall:
        raise
    except ValueError:  # also ints past Python's digit limit
        raise BadCall("body is not valid JSON") from None


def _no_constant(name: str) -> Any:
    raise BadCall(f"body has a non-finite number ({name})")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadCall("body has a number out of range")
    return value


def _check_tree(root: Any) -> None:
    """Depth and Unicode, walked without recursion (the tree is attacker-shaped)."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadCall(f"body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            for key, value in node.items():
                _check_text(key)
                stack.append((value, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, str):
            _check_text(node)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # JSON allows lone surrogates ("\ud83d"); UTF-8, and so Redis and 8x8, do not.
        raise BadCall("body has text that is not valid Unicode") from None
