"""Chat API v2 at `/vcc/{region}/chat/v2/...` with its OAuth token endpoint (spec §1.1, §2).

Regions us, eu, ca and ap are all served (others: 404); the path tenant must be the
configured one (else 403). [INFERRED] choices:
- The token answer follows the OAUTH page's real-looking example: every scalar a string,
  `api_product_list` a string, `api_product_list_json` the array.
- Create accepts `customer` (what real clients send) and `user` as its synonym, both optional.
- The list filter `status` reads: pending = queued, handling = an agent holds it,
  created = no live interaction (idle); `deleted` never matches.
- Message lists hold the create's history first, then later messages, oldest first.
- `participants` is an array (the OAS declares one object; spec §6.6).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.simulator import errors
from bridge.simulator.auth import check_basic
from bridge.simulator.customer import shown_as
from bridge.simulator.events import author_id, participants
from bridge.simulator.ids import iso
from bridge.simulator.routing import Handler, Route, answer_create, jwk_route
from bridge.simulator.state import SimConversation
from bridge.simulator.wire import Reader, no_content, respond, v2_list

if TYPE_CHECKING:
    from bridge.simulator.simulator import Simulator

BASE = "/vcc/{region}/chat/v2"
TOKEN_PATH = "/oauth/v2/token"


def _status(conv: SimConversation) -> str:
    if conv.interaction is None:
        return "created"
    return "handling" if conv.agent is not None else "pending"


class ChatV2Api:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.application_name = str(uuid.uuid4())

    def routes(self) -> list[Route]:
        many = f"{BASE}/tenant/{{tenant}}/conversations"
        one = f"{many}/{{conversation_id}}"
        table: list[tuple[str, str, Handler, str]] = [
            ("GET", many, self.list_conversations, "list_conversations"),
            ("POST", many, self.create_conversation, "create_conversation"),
            ("GET", one, self.get_conversation, "get_conversation"),
            ("GET", f"{one}/participants", self.participants, "participants"),
            ("DELETE", f"{one}/participants/customer", self.leave, "leave"),
            ("GET", f"{one}/messages", self.list_messages, "list_messages"),
            ("POST", f"{one}/messages", self.send_message, "send_message"),
        ]
        return [
            Route("POST", TOKEN_PATH, self.token, "token", "token", "none"),
            jwk_route(self.sim, f"{BASE}/jwk/{{kid}}/public", "chat-v2"),
            *(Route(m, p, h, n, "chat-v2", "bearer") for m, p, h, n in table),
        ]

    def _conversation(self, request: web.Request, route: str) -> SimConversation:
        conversation_id = request.match_info["conversation_id"]
        conv = self.sim.conversations.get(conversation_id)
        if conv is None:
            raise errors.not_found("chat-v2", route, "Conversation", conversation_id)
        return conv

    # --- token ---

    async def token(self, request: web.Request) -> web.StreamResponse:
        config = self.sim.config
        try:
            check_basic(request.headers, config.api_key, config.api_secret)
            issuer = self.sim.tokens
        except errors.ApiProblem:  # the Real-time Metrics app's credentials share the endpoint
            check_basic(request.headers, config.rtm_client_id, config.rtm_client_secret)
            issuer = self.sim.rtm_tokens
        form = await request.post()
        grant = form.get("grant_type", request.query.get("grant_type", ""))
        if grant != "client_credentials":
            shown = grant if isinstance(grant, str) else "?"
            raise errors.bad_request("token", "token", f"Unsupported grant type : {shown}")
        issued = issuer.issue()
        return respond(
            {
                "refresh_token_expires_in": "0",
                "api_product_list": "[chat-gateway, vcc]",
                "api_product_list_json": ["chat-gateway", "vcc"],
                "organization_name": "8x8gateway",
                "developer.email": "deprecated",
                "token_type": "BearerToken",
                "issued_at": str(issued.issued_at_ms),
                "client_id": "deprecated",
                "access_token": issued.value,
                "application_name": self.application_name,
                "scope": "",
                "expires_in": str(issued.expires_in_s),
                "refresh_count": "0",
                "status": "approved",
            }
        )

    # --- conversations ---

    @staticmethod
    def _view(conv: SimConversation) -> dict[str, Any]:
        interactions = []
        for interaction in conv.interactions:
            view = {"id": interaction.id, "startTime": iso(interaction.start_ms)}
            if interaction.end_ms is not None:
                view["endTime"] = iso(interaction.end_ms)
            interactions.append(view)
        return {
            "id": conv.id,
            "channelId": conv.channel_id,
            "customer": shown_as("chat-v2", conv.customer, conv.api),
            "startTime": iso(conv.created_ms),
            "interactions": interactions,
        }

    @staticmethod
    def _customer(read: Reader, body: dict[str, Any]) -> dict[str, Any]:
        name = "customer" if "customer" in body or "user" not in body else "user"
        customer = read.obj(body, name)
        if len(customer) > 30:
            read.fail(f"{name}: Must have at most 30 properties.", field=name)
        for key, value in customer.items():
            if not isinstance(value, str):
                read.fail(f"{name}.{key}: Must be a string.", field=f"{name}.{key}", value=value)
        read.language(customer.get("language"), f"{name}.language")
        return customer

    async def create_conversation(self, request: web.Request) -> web.StreamResponse:
        read = Reader("chat-v2", "create_conversation")
        body = await read.body(request)
        channel_id = read.required_text(body, "channelId")
        customer = self._customer(read, body)
        channel = self.sim.provisioning.channels.get(channel_id)
        if channel is None:
            read.fail(f"channelId: Channel {channel_id} does not exist.", field="channelId")
        history = read.history(body, "type")
        conv, first = self.sim.create_conversation(
            api="chat-v2",
            channel_id=channel_id,
            customer=customer,
            history=history,
            queue_id=channel.queue_id,
        )
        response = respond({"conversationId": conv.id, "timestamp": conv.created_ms}, status=202)
        return await answer_create(self.sim, request, response, conv.id, first)

    def _matches(self, conv: SimConversation, query: Any) -> bool:
        customer = shown_as("chat-v2", conv.customer, conv.api)
        status = query.get("status", "all")
        if status != "all" and status != _status(conv):
            return False
        if "channel-id" in query and query["channel-id"] != conv.channel_id:
            return False
        if "userId" in query and query["userId"] != customer.get("customerId"):
            return False
        return all(
            customer.get(key.removeprefix("customer.")) == value
            for key, value in query.items()
            if key.startswith("customer.")
        )

    async def list_conversations(self, request: web.Request) -> web.StreamResponse:
        read = Reader("chat-v2", "list_conversations")
        page, size = read.paging(request)
        order = read.choice(request.query, "order", ("asc", "desc"), "asc")
        found = [c for c in self.sim.conversations.values() if self._matches(c, request.query)]
        if order == "desc":
            found.reverse()
        return respond(v2_list([self._view(c) for c in found], page, size))

    async def get_conversation(self, request: web.Request) -> web.StreamResponse:
        return respond(self._view(self._conversation(request, "get_conversation")))

    async def participants(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "participants")
        items = [
            {"id": p["id"], "type": p["type"], "language": p["language"]}
            for p in participants(conv, "chat-v2")
        ]
        return respond({"participants": items})

    async def leave(self, request: web.Request) -> web.StreamResponse:
        self.sim.customer_leave(self._conversation(request, "leave"))
        return no_content()

    async def list_messages(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "list_messages")
        wanted = request.query.get("interaction-id")
        items = [
            {
                "interactionId": m.interaction_id,
                "originalText": m.text,
                "translatedText": m.text,
                "authorType": m.author_type,
                "participantId": author_id(conv, m, "chat-v2"),
            }
            for m in conv.history + conv.messages
            if wanted is None or m.interaction_id == wanted
        ]
        return respond({"messages": items})

    async def send_message(self, request: web.Request) -> web.StreamResponse:
        conv = self._conversation(request, "send_message")
        read = Reader("chat-v2", "send_message")
        body = await read.body(request)
        text = read.required_text(body, "text")
        author = read.choice(body, "authorType", ("user", "bot"), "user")
        self.sim.post_message(conv, author, text)
        return no_content(202)
