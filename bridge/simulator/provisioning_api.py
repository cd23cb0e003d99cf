"""Webhook and channel CRUD for both APIs (spec §2.3, §2.5, §4.3, §4.4): one registry, two
dialects (paths, list envelopes, version values, media types, error bodies).

- Create and verify send WEB_HOOK_VERIFY to the uri and answer 400 unless it answers 2xx
  ([INFERRED]); so does an update that changes the uri or version.
- `version` is read, and `notificationVersion` accepted as its synonym (spec §6.4). Gateway
  webhooks are "Chat Gateway v1.0"; v2 ones "v2.0" (v1.0 can no longer be created).
- `If-Match`, `sort` and `filter` are accepted and ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.eightbyeight.config import ApiFamily
from bridge.simulator import errors
from bridge.simulator.events import GATEWAY_WEBHOOK_VERSION, V2_WEBHOOK_VERSION
from bridge.simulator.provisioning import ChannelRecord, InUse, WebhookRecord
from bridge.simulator.routing import Auth, Handler, Route
from bridge.simulator.wire import Reader, hal_list, no_content, respond, v2_list

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator


class ProvisioningApi:
    def __init__(self, sim: Simulator, api: ApiFamily) -> None:
        self.sim = sim
        self.api: ApiFamily = api
        self.hal = api == "gateway"
        self.versions = (GATEWAY_WEBHOOK_VERSION,) if self.hal else (V2_WEBHOOK_VERSION,)
        # The OAS examples verify gateway webhooks with "v2.0", so verify takes either.
        self.verify_versions = (GATEWAY_WEBHOOK_VERSION, "v2.0") if self.hal else ("v1.0", "v2.0")

    def routes(self) -> list[Route]:
        auth: Auth = "api_key" if self.hal else "bearer"
        if self.hal:
            base, hooks = "/chat-gateway/v1", "/webhooks"
        else:
            base, hooks = "/vcc/{region}/chat/v2/tenant/{tenant}", "/web-hooks"
        hook = f"{base}{hooks}/{{webhook_id}}"
        channel = f"{base}/channels/{{channel_id}}"
        table: list[tuple[str, str, Handler, str]] = [
            ("GET", base + hooks, self.list_webhooks, "webhooks"),
            ("POST", base + hooks, self.create_webhook, "webhooks"),
            ("POST", f"{base}{hooks}/verify", self.verify_webhook, "webhooks"),
            ("GET", hook, self.get_webhook, "webhooks"),
            ("PUT", hook, self.update_webhook, "webhooks"),
            ("DELETE", hook, self.delete_webhook, "webhooks"),
            ("GET", base + "/channels", self.list_channels, "channels"),
            ("POST", base + "/channels", self.create_channel, "channels"),
            ("GET", channel, self.get_channel, "channels"),
            ("PUT", channel, self.update_channel, "channels"),
            ("DELETE", channel, self.delete_channel, "channels"),
        ]
        return [Route(m, p, h, n, self.api, auth) for m, p, h, n in table]

    # --- webhooks ---

    def _webhook(self, request: web.Request) -> WebhookRecord:
        webhook_id = request.match_info["webhook_id"]
        hook = self.sim.provisioning.webhooks.get(webhook_id)
        if hook is None:
            raise errors.not_found(self.api, "webhooks", "WebHook", webhook_id)
        return hook

    @staticmethod
    def _webhook_view(hook: WebhookRecord) -> dict[str, Any]:
        return {"id": hook.id, "name": hook.name, "uri": hook.uri, "version": hook.version}

    def _list(
        self, request: web.Request, read: Reader, collection: str, items: list[Any]
    ) -> web.Response:
        page, size = read.paging(request)
        if self.hal:
            return respond(hal_list(request, collection, items, page, size), hal=True)
        return respond(v2_list(items, page, size))

    async def _verified(self, read: Reader, uri: str, version: str) -> None:
        delivery = await self.sim.verify_webhook(uri, version)
        if not delivery.ok:
            answer = delivery.status if delivery.status is not None else delivery.error
            read.fail(
                f"uri: The webhook did not answer the verification with a 2xx status ({answer}).",
                field="uri",
                value=uri,
                code="invalid_webhook",
            )

    async def _webhook_input(self, request: web.Request, read: Reader) -> tuple[str, str, str]:
        body = await read.body(request)
        name = read.required_text(body, "name", max_len=256)
        uri = read.http_uri(body, "uri")
        if "version" not in body and "notificationVersion" in body:
            body["version"] = body["notificationVersion"]
        version = read.choice(body, "version", self.versions, self.versions[0])
        return name, uri, version

    async def list_webhooks(self, request: web.Request) -> web.StreamResponse:
        read = Reader(self.api, "webhooks")
        views = [self._webhook_view(h) for h in self.sim.provisioning.webhooks.values()]
        return self._list(request, read, "webhooks", views)

    async def create_webhook(self, request: web.Request) -> web.StreamResponse:
        read = Reader(self.api, "webhooks")
        name, uri, version = await self._webhook_input(request, read)
        await self._verified(read, uri, version)
        hook = self.sim.provisioning.add_webhook(name, uri, version)
        return respond(self._webhook_view(hook), hal=self.hal)

    async def verify_webhook(self, request: web.Request) -> web.StreamResponse:
        read = Reader(self.api, "webhooks")
        body = await read.body(request)
        uri = read.http_uri(body, "uri")
        version = read.choice(body, "version", self.verify_versions, None)
        await self._verified(read, uri, version)
        return no_content()

    async def get_webhook(self, request: web.Request) -> web.StreamResponse:
        return respond(self._webhook_view(self._webhook(request)), hal=self.hal)

    async def update_webhook(self, request: web.Request) -> web.StreamResponse:
        hook = self._webhook(request)
        read = Reader(self.api, "webhooks")
        name, uri, version = await self._webhook_input(request, read)
        if (uri, version) != (hook.uri, hook.version):
            await self._verified(read, uri, version)
        hook.name, hook.uri, hook.version = name, uri, version
        return respond(self._webhook_view(hook), hal=self.hal)

    async def delete_webhook(self, request: web.Request) -> web.StreamResponse:
        hook = self._webhook(request)
        try:
            self.sim.provisioning.delete_webhook(hook.id)
        except InUse as exc:
            Reader(self.api, "webhooks").fail(
                f"webHookId: {exc}.", field="webHookId", value=hook.id, code="webhook_in_use"
            )
        return no_content()

    # --- channels ---

    def _channel(self, request: web.Request) -> ChannelRecord:
        channel_id = request.match_info["channel_id"]
        channel = self.sim.provisioning.channels.get(channel_id)
        if channel is None:
            raise errors.not_found(self.api, "channels", "Channel", channel_id)
        return channel

    def _channel_view(self, channel: ChannelRecord) -> dict[str, Any]:
        view: dict[str, Any] = {"id": channel.id, "name": channel.name}
        if self.hal:
            view["type"] = channel.type
        view["webHookId"] = channel.webhook_id
        view["routingOptions"] = {"type": "queue", "id": channel.queue_id}
        return view

    async def _channel_input(self, request: web.Request, read: Reader) -> tuple[str, str, str]:
        body = await read.body(request)
        name = read.required_text(body, "name", max_len=255)
        webhook_id = read.required_text(body, "webHookId")
        if webhook_id not in self.sim.provisioning.webhooks:
            read.fail(
                f"Webhook ID {webhook_id} is invalid.",
                field="webHookId",
                value=webhook_id,
                code="invalid_webhook",
            )
        routing = read.obj(body, "routingOptions", required=True)
        read.choice(routing, "type", ("queue",), "queue")
        queue_id = read.required_text(routing, "id")
        if self.hal:
            read.choice(body, "type", ("ChatAPI",), "ChatAPI")
        return name, webhook_id, queue_id

    async def list_channels(self, request: web.Request) -> web.StreamResponse:
        read = Reader(self.api, "channels")
        views = [self._channel_view(c) for c in self.sim.provisioning.channels.values()]
        return self._list(request, read, "channels", views)

    async def create_channel(self, request: web.Request) -> web.StreamResponse:
        read = Reader(self.api, "channels")  # v2: ValidationExceptionPayload
        name, webhook_id, queue_id = await self._channel_input(request, read)
        channel = self.sim.provisioning.add_channel(name, webhook_id, queue_id)
        return respond(self._channel_view(channel), hal=self.hal)

    async def get_channel(self, request: web.Request) -> web.StreamResponse:
        return respond(self._channel_view(self._channel(request)), hal=self.hal)

    async def update_channel(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        read = Reader(self.api, "channel_update")  # v2: ConstraintViolationProblem
        channel.name, channel.webhook_id, channel.queue_id = await self._channel_input(
            request, read
        )
        return respond(self._channel_view(channel), hal=self.hal)

    async def delete_channel(self, request: web.Request) -> web.StreamResponse:
        channel = self._channel(request)
        del self.sim.provisioning.channels[channel.id]
        return no_content()
