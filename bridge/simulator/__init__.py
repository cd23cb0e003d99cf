"""The 8x8 simulator: a local stand-in for 8x8 Contact Center's chat APIs.

It serves both REST APIs at 8x8's own paths (Chat Gateway `/chat-gateway/v1/...`, Chat API
v2 `/vcc/{region}/chat/v2/...` with `POST /oauth/v2/token`), so `EIGHTBYEIGHT_BASE_URL`
pointed at it is all a client needs. It signs and delivers webhook events as 8x8 does (JWS
RS256 over the detached payload, the six `x-8x8-*` headers, retries with a stable event id),
in the event family of `SimulatorConfig.api`, and it has a scriptable agent desk and fault
injection. Everything it serves comes from spec 8x8-chat-api.md; where the spec says
[INFERRED], the module that decides documents its choice:

- lifecycle (reopen, transfer, leave): `state`;  event orders per family: `events`
- conversation routes: `gateway_api`, `chat_v2_api`;  webhooks/channels: `provisioning_api`
- delivery, retries, ordering: `delivery`;  fault injection: `faults`;  keys: `keys`

Python API::

    async with running_simulator(SimulatorConfig(webhook_url=url)) as sim:
        sim.base_url                                    # EIGHTBYEIGHT_BASE_URL
        await sim.desk.accept(conversation_id, agent_name="Anna")
        await sim.desk.say(conversation_id, "Hello")
        sim.faults.fail_next("create_conversation", status=503, retry_after=2)
        await sim.wait_for_deliveries(lambda d: d.event_type == "QUEUED")

The seeded state: channel `config.channel_id` (queue `config.queue_id`) pointing at webhook
"1", whose uri is the default target `config.webhook_url` (`set_webhook_url` changes both).
Channels and webhooks made through the API route events of their conversations to their
own webhook's uri.

Desk control API (JSON over HTTP under `/_sim/`; no 8x8 auth: bind it to loopback).
Errors are `{"error": "..."}` with 400 (bad input), 404 (unknown conversation) or 409
(the action does not fit the conversation's state). Actions answer the conversation view.

    GET    /_sim/info                              base URL, api, tenant, channel, queue, kid
    GET    /_sim/conversations                     {"conversations": [view, ...]}
    GET    /_sim/conversations/{id}                one view: state, agent, queueId, customer,
                                                   history (bot transcript), messages,
                                                   interactions, userPresent
    POST   /_sim/conversations/{id}/accept         {"agentName": "Anna", "agentId": optional}
    POST   /_sim/conversations/{id}/say            {"text": "..."}
    POST   /_sim/conversations/{id}/typing         {"on": true | false}
    POST   /_sim/conversations/{id}/leave          {}  (the agent ends the interaction)
    POST   /_sim/conversations/{id}/transfer       {"queueId": "202"}
    GET    /_sim/faults                            {"pending": {route: count}}
    POST   /_sim/faults                            {"route", "count", "status", "timeout",
                                                    "retryAfter"}  (see Faults.fail_next)
    DELETE /_sim/faults                            clear them all
    GET    /_sim/deliveries                        {"deliveries": [attempt, ...]}
    GET    /_sim/requests                          {"requests": [...], "tokenRequests": n}
    POST   /_sim/webhook-url                       {"url": "http://..." | null}
    POST   /_sim/rotate-key                        {"kid": new kid}
    GET    /_sim/events                            server-sent events: `event: <type>` and
                                                   JSON `data` per change notice
"""

from bridge.simulator.config import SimulatorConfig
from bridge.simulator.delivery import Delivery
from bridge.simulator.faults import ROUTES as FAULT_ROUTES
from bridge.simulator.server import RecordedRequest
from bridge.simulator.simulator import Simulator, running_simulator
from bridge.simulator.state import (
    Agent,
    InvalidTransition,
    SimConversation,
    SimInteraction,
    SimMessage,
    UnknownConversation,
)

__all__ = [
    "FAULT_ROUTES",
    "Agent",
    "Delivery",
    "InvalidTransition",
    "RecordedRequest",
    "SimConversation",
    "SimInteraction",
    "SimMessage",
    "Simulator",
    "SimulatorConfig",
    "UnknownConversation",
    "running_simulator",
]
