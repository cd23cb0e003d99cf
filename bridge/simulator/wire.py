"""Request reading and response writing shared by both APIs' routes."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TypeVar

from aiohttp import web
from yarl import URL

from bridge.simulator.errors import Style, bad_request

T = TypeVar("T")

HAL_JSON = "application/hal+json"

# The `Language` enum (spec §2.2): 8x8 routes on it, so a wrong value is a 400.
LANGUAGES = frozenset(
    {"en", "ru", "de", "ja", "es", "fr", "pt", "it", "pl", "hr", "nl"}
    | {"ar", "da", "ko", "no", "sv", "vi", "cy", "th", "zh-CN", "zh-TW"}
)


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def respond(body: Any, *, status: int = 200, hal: bool = False) -> web.Response:
    """A JSON success: `application/hal+json` on the gateway, `application/json` on v2."""
    return web.Response(
        status=status, body=dumps(body), content_type=HAL_JSON if hal else "application/json"
    )


def no_content(status: int = 204) -> web.Response:
    return web.Response(status=status)


class Reader:
    """Validates one request's input and raises the route's documented 400."""

    def __init__(self, style: Style, route: str) -> None:
        self.style = style
        self.route = route

    def fail(self, message: str, *, field: str = "", value: Any = None, code: str = "") -> NoReturn:
        raise bad_request(
            self.style,
            self.route,
            message,
            field=field,
            value=value,
            code=code or "invalid_parameter",
        )

    async def body(self, request: web.Request) -> dict[str, Any]:
        """The JSON object the request carries."""
        raw = await request.read()
        try:
            value: Any = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise bad_request(
                self.style, self.route, f"Malformed JSON: {exc}", code="invalid_json_object"
            ) from None
        if not isinstance(value, dict):
            raise bad_request(
                self.style,
                self.route,
                "The request body must be a JSON object.",
                code="invalid_json_object",
            )
        return value

    def text(
        self, body: Mapping[str, Any], name: str, *, required: bool = True, max_len: int = 0
    ) -> str | None:
        value = body.get(name)
        if value is None or value == "":
            if required:
                self.fail(f"{name}: May not be empty.", field=name, value=value)
            return None
        if not isinstance(value, str):
            self.fail(f"{name}: Must be a string.", field=name, value=value)
        if max_len and len(value) > max_len:
            self.fail(f"{name}: Size must be at most {max_len}.", field=name, value=value)
        return str(value)

    def required_text(self, body: Mapping[str, Any], name: str, *, max_len: int = 0) -> str:
        value = self.text(body, name, max_len=max_len)
        if value is None:  # text() raised already; this keeps the type exact
            self.fail(f"{name}: May not be empty.", field=name)
        return value

    def obj(self, body: Mapping[str, Any], name: str, *, required: bool = False) -> dict[str, Any]:
        value = body.get(name)
        if value is None:
            if required:
                self.fail(f"{name}: May not be null.", field=name)
            return {}
        if not isinstance(value, dict):
            self.fail(f"{name}: Must be an object.", field=name, value=value)
        return dict(value)

    def choice(
        self, body: Mapping[str, Any], name: str, allowed: Sequence[str], default: str | None
    ) -> str:
        value = body.get(name, default)
        if value not in allowed:
            self.fail(
                f"{name}: Invalid value {value!r}, has to be one of {', '.join(allowed)}.",
                field=name,
                value=value,
            )
        return str(value)

    def language(self, value: Any, name: str) -> None:
        if value is not None and value not in LANGUAGES:
            self.fail(f"{name}: Unsupported language {value!r}.", field=name, value=value)

    def http_uri(self, body: Mapping[str, Any], name: str) -> str:
        value = self.required_text(body, name, max_len=2048)
        try:
            url = URL(value)
        except ValueError:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            self.fail(f"{name}: Must be an absolute http(s) URI.", field=name, value=value)
        return value

    def history(self, body: Mapping[str, Any], author_key: str) -> list[tuple[str, str]]:
        """The create's bot transcript as (author type, text); the author key is `authorType`
        on the gateway and `type` on v2 (spec §2.6, §4.5)."""
        history = self.obj(body, "history")
        if not history:
            return []
        messages = history.get("messages")
        if not isinstance(messages, list):
            self.fail("history.messages: May not be null.", field="history.messages")
        if len(messages) > 200:
            self.fail("history.messages: Size must be at most 200.", field="history.messages")
        out: list[tuple[str, str]] = []
        for i, item in enumerate(messages):
            name = f"history.messages[{i}]"
            if not isinstance(item, dict):
                self.fail(f"{name}: Must be an object.", field=name, value=item)
            author = self.choice(item, author_key, ("user", "bot"), "user")
            text = item.get("text", "")
            if not isinstance(text, str):
                self.fail(f"{name}.text: Must be a string.", field=f"{name}.text", value=text)
            out.append((author, text))
        return out

    def paging(self, request: web.Request) -> tuple[int, int]:
        """`page` (0-based) and `size` from the query (defaults 0 and 20)."""
        page = self._int_query(request, "page", 0, 0, 1_000_000)
        size = self._int_query(request, "size", 20, 1, 1000)
        return page, size

    def _int_query(self, request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = lo - 1
        if not lo <= value <= hi:
            self.fail(f"{name}: Must be an integer from {lo} to {hi}.", field=name, value=raw)
        return value


def page_of(items: Sequence[T], page: int, size: int) -> list[T]:
    return list(items[page * size : (page + 1) * size])


def hal_list(
    request: web.Request, collection: str, items: Sequence[Any], page: int, size: int
) -> dict[str, Any]:
    """The gateway's HAL list (spec §4.2)."""
    return {
        "_embedded": {collection: page_of(items, page, size)},
        "_links": {"self": {"href": str(request.rel_url)}},
        "page": {
            "size": size,
            "number": page,
            "totalElements": len(items),
            "totalPages": math.ceil(len(items) / size),
        },
    }


def v2_list(items: Sequence[Any], page: int, size: int) -> dict[str, Any]:
    """v2's `PageResult` list (spec §2.2)."""
    return {
        "data": page_of(items, page, size),
        "page": {
            "pageSize": size,
            "pageIndex": page,
            "elementCount": len(items),
            "pageCount": math.ceil(len(items) / size),
        },
    }
