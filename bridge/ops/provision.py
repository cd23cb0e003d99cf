"""`handoff-bridge provision --webhook-url URL [--queue ID]`: make 8x8 call this bridge.

Idempotent: finds the webhook whose URI is URL (else creates one; 8x8 verifies it on create),
then the Chat API channel that uses it (else creates one, on `--queue` or the configured queue),
verifies the webhook again, and prints the settings `serve` needs. Running it twice changes
nothing the second time.
"""

from __future__ import annotations

import argparse
from typing import Any

from bridge.eightbyeight.client import Channel, ChatClient, Webhook
from bridge.ops.common import EXIT_CODES, Exit, Failed, add_json_flag, run, settings_for

NAME = "handoff-bridge"  # the name of what we create, so an operator sees it in 8x8's console


def add(sub: Any) -> None:
    p = sub.add_parser(
        "provision",
        epilog=EXIT_CODES,
        help="create or find the 8x8 webhook and Chat API channel; print the settings to use",
        description="Find or create (idempotently) the webhook pointing at URL and a channel "
        "using it, on the configured 8x8 API; verify the webhook; print the settings.",
    )
    p.add_argument("--webhook-url", required=True,
                   help="this bridge's public webhook, e.g. https://bridge.example.com/8x8/events")  # fmt: skip
    p.add_argument("--queue", help="queue of a new channel (default EIGHTBYEIGHT_QUEUE_ID)")
    add_json_flag(p)
    p.set_defaults(func=lambda args: run(provision, args))


async def provision(args: argparse.Namespace) -> tuple[Exit, Any, str]:
    from bridge.eightbyeight import make_client
    from bridge.eightbyeight.config import EightByEightConfig

    settings = settings_for(needs_8x8=False)
    if settings.eightbyeight_api_key is None:
        raise Failed(Exit.CONFIG, "EIGHTBYEIGHT_API_KEY: is required")
    config = EightByEightConfig(
        api=settings.eightbyeight_api, base_url=settings.eightbyeight_base_url,
        api_key=settings.eightbyeight_api_key, channel_id=settings.eightbyeight_channel_id or "-",
        api_secret=settings.eightbyeight_api_secret, tenant_id=settings.eightbyeight_tenant_id,
        region=settings.eightbyeight_region, auth_url=settings.eightbyeight_auth_url,
    )  # fmt: skip
    chat = make_client(config)
    try:
        hook, hook_new = await _webhook(chat, args.webhook_url)
        queue = args.queue or settings.eightbyeight_queue_id
        channel, channel_new = await _channel(chat, hook, queue)
        await chat.verify_webhook(hook.uri)
    finally:
        await chat.close()
    env = {"EIGHTBYEIGHT_API": settings.eightbyeight_api, "EIGHTBYEIGHT_CHANNEL_ID": channel.id}
    if settings.eightbyeight_api == "gateway" and queue:
        env["EIGHTBYEIGHT_QUEUE_ID"] = queue
    data = {
        "webhook": {"id": hook.id, "uri": hook.uri, "created": hook_new, "verified": True},
        "channel": {"id": channel.id, "name": channel.name, "queue": channel.queue_id,
                    "created": channel_new},
        "settings": env,
    }  # fmt: skip
    text = "\n".join([
        f"webhook  {hook.id}  {hook.uri}  ({'created' if hook_new else 'found'}, verified)",
        f"channel  {channel.id}  {channel.name}  queue {channel.queue_id or '-'}  "
        f"({'created' if channel_new else 'found'})",
        "", "Settings for serve (with your existing EIGHTBYEIGHT_API_KEY etc.):",
        *(f"{k}={v}" for k, v in env.items()),
    ])  # fmt: skip
    return Exit.OK, data, text


async def _webhook(chat: ChatClient, uri: str) -> tuple[Webhook, bool]:
    for hook in await chat.list_webhooks():
        if hook.uri.rstrip("/") == uri.rstrip("/"):
            return hook, False
    return await chat.create_webhook(NAME, uri), True


async def _channel(chat: ChatClient, hook: Webhook, queue: str | None) -> tuple[Channel, bool]:
    for channel in await chat.list_channels():
        if channel.webhook_id == hook.id and channel.type in (None, "ChatAPI"):
            return channel, False
    if not queue:
        raise Failed(Exit.CONFIG, "no channel uses this webhook yet: give --queue ID (or set "
                     "EIGHTBYEIGHT_QUEUE_ID) for the one to create")  # fmt: skip
    return await chat.create_channel(NAME, hook.id, queue), True
