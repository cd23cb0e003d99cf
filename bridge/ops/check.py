"""`handoff-bridge check`: is this deployment wired right? One line per thing `serve` depends
on, OK or what is wrong in plain words. Nothing is changed."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from typing import Any

from bridge.errors import (
    AuthError,
    ConfigError,
    NotFound,
    StoreUnavailable,
    UpstreamError,
)
from bridge.ops.common import EXIT_CODES, Exit, add_json_flag, run, table
from bridge.settings import Settings, load_settings


@dataclass(frozen=True)
class Line:
    check: str
    ok: bool
    detail: str


def add(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        epilog=EXIT_CODES,
        help="check settings, 8x8 (credentials, channel, webhook), Redis and Rasa",
        description="Check everything `serve` depends on, with the same settings. "
        "Exit 0 when all is well, 1 when something is wrong (each line says what).",
    )
    p.add_argument("--webhook-url", help="the URL 8x8 should call (this bridge's /8x8/events); "
                   "checked against the channel's webhook")  # fmt: skip
    add_json_flag(p)
    p.set_defaults(func=lambda args: run(check, args))


async def check(args: argparse.Namespace) -> tuple[Exit, Any, str]:
    lines: list[Line] = []
    try:
        settings = load_settings()
        settings.check_for_serve()
        lines.append(Line("settings", True, f"valid (8x8 API: {settings.eightbyeight_api})"))
    except ConfigError as exc:
        lines.append(Line("settings", False, str(exc)))
        settings = None
    if settings is not None:
        lines += await _eightbyeight(settings, args.webhook_url)
    else:
        lines.append(Line("8x8", False, "not checked: fix the settings first"))
    base = settings or _lenient()
    if base is not None:
        lines.append(await _redis(base))
        lines += await _rasa(base)
    ok = all(line.ok for line in lines)
    rows = [("OK" if line.ok else "FAIL", line.check, line.detail) for line in lines]
    text = table(["", "CHECK", "DETAIL"], rows) + ("" if ok else "\n\nSome checks failed.")
    return (Exit.OK if ok else Exit.PROBLEM), {"ok": ok, "checks": [asdict(x) for x in lines]}, text


def _lenient() -> Settings | None:
    """Settings that load (types fine) but are incomplete for `serve`: Redis and Rasa can
    still be checked."""
    try:
        return load_settings()
    except ConfigError:
        return None


def _upstream_problem(what: str, exc: UpstreamError, settings: Settings) -> str:
    if isinstance(exc, AuthError):
        names = ("EIGHTBYEIGHT_API_KEY, _API_SECRET and _TENANT_ID are"
                 if settings.eightbyeight_api == "chat-v2" else "EIGHTBYEIGHT_API_KEY is")  # fmt: skip
        return (f"{what}: 8x8 refused the credentials ({exc.status}): check that {names} "
                f"valid for the {settings.eightbyeight_api} API at {settings.eightbyeight_base_url}")  # fmt: skip
    if exc.status is None:
        return f"{what}: cannot reach 8x8 at {settings.eightbyeight_base_url} ({exc})"
    return f"{what}: 8x8 answered {exc.status} ({exc})"


async def _eightbyeight(settings: Settings, webhook_url: str | None) -> list[Line]:
    from bridge.eightbyeight import make_client

    chat = make_client(settings.eightbyeight())
    channel_id = settings.eightbyeight_channel_id or ""
    try:
        try:
            await chat.list_webhooks()
        except UpstreamError as exc:
            return [Line("8x8 credentials", False, _upstream_problem("API", exc, settings))]
        lines = [Line("8x8 credentials", True, f"accepted by {settings.eightbyeight_base_url}")]
        try:
            channel = await chat.get_channel(channel_id)
        except NotFound:
            return [*lines, Line("8x8 channel", False, f"channel {channel_id!r} does not exist "
                                 f"on the {settings.eightbyeight_api} API (handoff-bridge "
                                 "provision creates one)")]  # fmt: skip
        lines.append(Line("8x8 channel", True, f"{channel.id} ({channel.name}), queue "
                          f"{channel.queue_id or '-'}"))  # fmt: skip
        return [*lines, await _webhook(chat, channel.webhook_id, webhook_url)]
    except UpstreamError as exc:
        return [Line("8x8", False, _upstream_problem("8x8", exc, settings))]
    finally:
        await chat.close()


async def _webhook(chat: Any, webhook_id: str | None, expected: str | None) -> Line:
    if not webhook_id:
        return Line("8x8 webhook", False, "the channel has no webhook: 8x8 sends us nothing")
    try:
        hook = await chat.get_webhook(webhook_id)
    except NotFound:
        return Line("8x8 webhook", False, f"the channel's webhook {webhook_id} does not exist")
    if expected and hook.uri.rstrip("/") != expected.rstrip("/"):
        return Line("8x8 webhook", False, f"points at {hook.uri}, not at {expected}")
    try:
        await chat.verify_webhook(hook.uri)
    except UpstreamError as exc:
        return Line("8x8 webhook", False, f"{hook.uri} did not pass 8x8's verification "
                    f"(WEB_HOOK_VERIFY): is serve running there? ({exc})")  # fmt: skip
    return Line("8x8 webhook", True, f"{hook.uri} answers 8x8's verification")


async def _redis(settings: Settings) -> Line:
    from bridge.store import open_store

    if not settings.redis_url:
        return Line("redis", False, "REDIS_URL is unset: serve would keep state in one process "
                    "only, lost on restart")  # fmt: skip
    store = await open_store(settings.redis_url, prefix=settings.redis_key_prefix)
    try:
        await store.ping()
    except StoreUnavailable as exc:
        return Line("redis", False, f"cannot reach Redis: {exc}")
    finally:
        await store.close()
    return Line("redis", True, "answers")


async def _rasa(settings: Settings) -> list[Line]:
    from bridge.rasa.client import RasaClient

    rasa = RasaClient(settings.rasa_url, token=settings.rasa_token, timeout_s=5.0)
    try:
        try:
            version = (await rasa.version()).get("version", "?")
        except UpstreamError as exc:
            return [Line("rasa", False, f"cannot reach Rasa at {settings.rasa_url} ({exc})")]
        lines = [Line("rasa", True, f"Rasa {version} at {settings.rasa_url}")]
        try:
            status = await rasa.status()
        except UpstreamError as exc:
            problem = {
                401: "refused RASA_TOKEN (or Rasa runs without --enable-api)",
                403: "refused RASA_TOKEN (or Rasa runs without --enable-api)",
                409: "Rasa has no trained model loaded: it cannot run the bot",
            }.get(exc.status or 0, str(exc))
            return [*lines, Line("rasa api", False, f"/status: {problem}")]
        model = status.get("model_file") or ("loaded" if status.get("fingerprint") else "none")
        return [*lines, Line("rasa api", True, f"/status answers with RASA_TOKEN; model {model}")]
    finally:
        await rasa.close()
