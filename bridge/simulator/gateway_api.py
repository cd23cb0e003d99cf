"""Chat Gateway conversations at `/chat-gateway/v1/...` (spec §4.5 - §4.7), and its JWK path.

Served: create, list, get, interactions, typing, participants, user leave, messages (send,
list, get one). Not simulated: PUT/PATCH conversation, post-agent assignment, thinking,
read receipts, attachments and cards (404, as for any unknown path).
[INFERRED] choices:
- `assignment.type` "script" is refused (400): the simulator runs no 8x8 scripts.
- A conversation's `state` is `active` as soon as create answers (its `created` phase only
  shows in the first CONVERSATION_UPDATE), `idle` once its interaction ended.
- Message lists hold the create's history first, then later messages; newest first unless
  `sort=createdAt:asc`. An `authorType` of "agent" is refused like any other invalid one.
- Conversation lists ignore `sort` and `filter` (creation order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.customer import shown_as
from bridge.simulator.events import author_id, participants
from bridge.simulator.ids import iso
from bridge.simulator.routing import Handler, Route, answer_create, jwk_route
from bridge.simulator.state import SimConversation, SimMessage
from bridge.simulator.wire import Reader, hal_list, no_content, respond

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator

BASE = "/chat-gateway/v1"
_SCALARS = (str, int, float)


class GatewayApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def routes(self) -> list[Route]:
        many = f"{BASE}/conversations"
        one = f"{many}/{{conversation_id}}"
        table: list[tuple[str, str, Handler, str]] = [
            ("GET", many, self.list_conversations, "list_conversations"),
            ("POST", many, self.create_conversation, "create_conversation"),
            ("GET", one, self.get_conversation, "get_conversation"),
            ("GET", f"{one}/interactions", self.interactions, "interactions"),
            ("POST", f"{one}/typing", self.typing, "typing"),
            ("GET", f"{one}/participants", self.participants, "participants"),
            ("PATCH", f"{one}/participants/user", self.leave, "leave"),
            ("GET", f"{one}/messages", self.list_messages, "list_messages"),
            ("POST", f"{one}/messages", self.send_message, "send_message"),
            ("GET", f"{one}/messages/{{message_id}}", self.get_message, "list_messages"),
        ]
        routes = [Route(m, p, h, n, "gateway", "api_key") for m, p, h, n in table]
        return [jwk_route(self.sim, f"{BASE}/jwk/{{kid}}/public", "gateway"), *routes]

    def _conversation(self, request: web.Request, route: str) -> SimConversation:
        conversation_id = request.match_info["conversation_id"]
        conv = self.sim.conversations.get(conversation_id)
        if conv is None:
            raise errors.not_found("gateway", route, "Conversation", conversation_id)
        return conv

    # --- views ---

    @staticmethod
    def _view(conv: SimConversation) -> dict[str, Any]:
        if conv.agent is not None:
            assignment = {"type": "agent", "id": conv.agent.id}
        else:
            assignment = {"type": "queue", "id": conv.queue_id}
        return {
            "id": conv.id,
            "channelId": conv.channel_id,
            "assignment": assignment,
            "user": shown_as("gateway", conv.customer, conv.api),
            "state": conv.state,
            "_links": {"self": {"href": f"{BASE}/conversations/{conv.id}"}},
        }

    @staticmethod
    def _message_view(conv: SimConversation, message: SimMessage) -> dict[str, Any]:
        who = author_id(conv, message, "gateway")
        author = next(p for p in participants(conv, "gateway") if p["id"] == who)
        return {
            "id": message.id,
            "text": message.text,
            "createdAt": message.created_at,
            "author": author,
            "attachments": [],
            "cards": [],
        }

    # --- input ---

    @staticmethod
    def _user(read: Reader, body: dict[str, Any]) -> dict[str, Any]:
        user = read.obj(body, "user", required=True)
        for key, value in user.items():
            if key != "additionalProperties" and not isinstance(value, _SCALARS):
                read.fail(f"user.{key}: Must be a string.", field=f"user.{key}", value=value)
        read.language(user.get("language"), "user.language")
        extra = user.get("additionalProperties", [])
        if not isinstance(extra, list) or len(extra) > 30:
            read.fail(
                "user.additionalProperties: Must be a list of at most 30 key/value pairs.",
                field="user.additionalProperties",
            )
        for item in extra:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("key"), str)
                and item["key"]
                and isinstance(item.get("value"), str)
            ):
                read.fail(
                    "user.additionalProperties: Each item needs a string key and value.",
                    field="user.additionalProperties",
                    value=item,
                )
        return user

    # --- handlers ---

    async def create_conversation(self, request: web.Request) -> web.StreamResponse:
        read = Reader("gateway", "create_conversation")
        body = await read.body(request)
        channel_id = read.required_text(body, "channelId")
        user = self._user(read, body)
        channel = self.sim.provisioning.channels.get(channel_id)
        if channel is None:
            read.fail(
                f"channelId: Channel {channel_id} does not exist.",
                field="channelId",
                code="invalid_channel",
            )
        queue_id = channel.queue_id
        assignment = read.obj(body, "assignment")
        if assignment:
            read.choice(assignment, "type", ("queue",), "queue")
            queue_id = read.required_text(assignment, "id")
        history = read.history(body, "authorType")
        conv, first = self.sim.create_conversation(
            api="gateway", channel_id=channel_id, customer=user, history=history, queue_id=queue_id
        )
        answer = {"conversationId": conv.id, "createdAt": iso(conv.created_ms)}
        response = respond(answer, status=202, hal=True)
        return await answer_create(self.sim, request, response, conv.id, first)

    async def list_conversations(self, request: web.Request) -> web.StreamResponse:
        page, size = Reader("gateway", "list_conversations").paging(request)
        views = [self._view(c) for c in self.sim.conversations.values()]
        return respond(hal_list(request, "conversations", views, page, size), hal=True)

    async def get_conversation(self, request: web.Request) -> web.StreamResponse:
        return respond(self._view(self._conversation(request, "get_conversation")), hal=True)

    async def interactions(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "interactions")
        page, size = Reader("gateway", "interactions").paging(request)
        views = []
        for interaction in conv.interactions:
            view = {"id": interaction.id, "startTime": iso(interaction.start_ms)}
            if interaction.end_ms is not None:
                view["endTime"] = iso(interaction.end_ms)
            views.append(view)
        return respond(hal_list(request, "interactions", views, page, size), hal=True)

    async def typing(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "typing")
        read = Reader("gateway", "typing")
        body = await read.body(request)
        author = body.get("authorType")
        if author not in ("bot", "user"):
            read.fail(
                f"Invalid parameter exception for conversation {conv.id} and tenant "
                f"{self.sim.config.tenant_id}: authorType must be one of bot, user.",
                field="authorType",
                value=author,
            )
        self.sim.user_typing(conv, str(author))
        return no_content()

    async def participants(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "participants")
        page, size = Reader("gateway", "participants").paging(request)
        items = participants(conv, "gateway")
        return respond(hal_list(request, "participants", items, page, size), hal=True)

    async def leave(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "leave")
        read = Reader("gateway", "leave")
        body = await read.body(request)
        if body.get("removed") is not True:
            read.fail("removed: Must be true (the user can only leave).", field="removed")
        self.sim.customer_leave(conv)
        return no_content()

    async def list_messages(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "list_messages")
        read = Reader("gateway", "list_messages")
        page, size = read.paging(request)
        order = request.query.get("sort", "createdAt:desc")
        if order not in ("createdAt:desc", "createdAt:asc"):
            read.fail(
                "sort: Sorting is available only for createdAt (createdAt:asc or createdAt:desc).",
                field="sort",
                value=order,
            )
        messages = conv.history + conv.messages
        if order == "createdAt:desc":
            messages.reverse()
        views = [self._message_view(conv, m) for m in messages]
        listing = hal_list(request, "messages", views, page, size)
        del listing["_links"]  # MessageListResult has none (spec §4.2)
        return respond(listing, hal=True)

    async def get_message(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "list_messages")
        message_id = request.match_info["message_id"]
        for message in conv.history + conv.messages:
            if message.id == message_id:
                return respond(self._message_view(conv, message), hal=True)
        raise errors.not_found("gateway", "list_messages", "Message", message_id)

    async def send_message(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "send_message")
        read = Reader("gateway", "send_message")
        body = await read.body(request)
        author = body.get("authorType")
        if author not in ("user", "bot"):
            valid = "user, bot" if author == "agent" else "user, bot, agent"
            read.fail(f"Invalid authorType={author}, has to be one of {valid}")
        text = body.get("text")
        if text is not None and not isinstance(text, str):
            read.fail("text: Must be a string.", field="text", value=text)
        if text and body.get("externalProvider") is not None:
            read.fail("Both text and externalProvider cannot be provided at the same time.")
        if not text and not any(body.get(k) for k in ("externalProvider", "cards", "attachments")):
            read.fail("text: May not be empty.", field="text")
        self.sim.post_message(conv, str(author), text or "")
        return no_content(202)
