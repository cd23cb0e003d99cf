"""The load: agent events of both 8x8 APIs, signed as 8x8 signs them, sent saturated or paced.

Events are signed before a phase starts (RSA signing is the sender's cost, not the bridge's),
with the transmission time of that moment. A conversation's events are sent one after the
other, each once the previous one was answered, as 8x8 sends them; conversations go in
parallel.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from bench.stats import event_text
from bridge.eightbyeight.signature import HEADER_SIGNATURE, SignedHeaders, detached_payload
from bridge.simulator import Simulator
from bridge.simulator.ids import random_id


@dataclass(frozen=True)
class Event:
    conversation: str
    sender: str
    text: str  # unique; what the stand-in receives for an agent message
    body: bytes
    headers: dict[str, str]


@dataclass
class Sent:
    """What the sender saw: send (or scheduled) times by text, and the non-2xx answers."""

    times: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    retried: int = 0
    first: float = 0.0
    last_answer: float = 0.0


def agent_message(api: str, conversation: str, text: str, ts: int) -> dict[str, object]:
    if api == "chat-v2":
        return {"eventType": "TEXT", "messageType": "AGENT", "conversationId": conversation,
                "agentId": "agent-1", "agentName": "Anna", "message": text, "timestamp": ts}  # fmt: skip
    data = {"isEcho": False, "sender": {"id": "agent-1", "type": "agent"}, "text": text,
            "attachments": [], "cards": []}  # fmt: skip
    return {"eventType": "MESSAGE", "conversationId": conversation, "timestamp": ts, "data": data}


def queued(api: str, conversation: str, ts: int) -> dict[str, object]:
    if api == "chat-v2":
        return {"eventType": "QUEUED", "messageType": "SYSTEM", "conversationId": conversation,
                "queueId": "101", "queueName": "Queue 101", "timestamp": ts}  # fmt: skip
    data = {"queueId": "101", "queueName": "Queue 101"}
    return {"eventType": "QUEUED", "conversationId": conversation, "timestamp": ts, "data": data}


def agent_joined(api: str, conversation: str, ts: int) -> dict[str, object]:
    if api == "chat-v2":
        return {"eventType": "AGENT_JOINED", "messageType": "SYSTEM", "conversationId": conversation,
                "agentId": "agent-1", "agentName": "Anna", "timestamp": ts}  # fmt: skip
    data = {"memberType": "agent", "change": "joined", "id": "agent-1"}
    return {"eventType": "MEMBERS_CHANGED", "conversationId": conversation, "timestamp": ts,
            "data": data}  # fmt: skip


def sign(sim: Simulator, body: bytes, now_ms: int) -> dict[str, str]:
    signed = SignedHeaders(
        customer_id=sim.config.customer_id,
        event_id=random_id(),  # 8x8's shape: 22 url-safe characters
        retry=0,
        tenant_id=sim.config.tenant_id,
        transmission_time_ms=now_ms,
    )
    signature = sim.keys.sign(detached_payload(body, signed))
    return {**signed.as_headers(), HEADER_SIGNATURE: signature, "content-type": "application/json"}


def _event(sim: Simulator, conversation: str, sender: str, text: str, obj: object) -> Event:
    now_ms = int(time.time() * 1000)
    body = json.dumps(obj, separators=(",", ":")).encode()
    return Event(conversation, sender, text, body, sign(sim, body, now_ms))


def agent_messages(
    sim: Simulator, api: str, pairs: Sequence[tuple[str, str]], count: int, start: int
) -> list[Event]:
    """`count` agent messages, round-robin over the (conversation, sender) pairs; sequence
    numbers continue from `start` so texts stay unique across phases."""
    out = []
    now_ms = int(time.time() * 1000)
    for i in range(count):
        conversation, sender = pairs[i % len(pairs)]
        text = event_text(sender, start + i // len(pairs))
        out.append(
            _event(sim, conversation, sender, text, agent_message(api, conversation, text, now_ms))
        )
    return out


def handoff_lifecycle(sim: Simulator, api: str, pairs: Sequence[tuple[str, str]]) -> list[Event]:
    """Queued, agent joined, one agent message: three events per live handoff, in order."""
    now_ms = int(time.time() * 1000)
    out = []
    for step in range(3):
        for conversation, sender in pairs:
            if step == 0:
                obj, text = queued(api, conversation, now_ms), "#EXTERNAL_handoff_queued"
            elif step == 1:
                obj, text = agent_joined(api, conversation, now_ms), "#EXTERNAL_agent_joined"
            else:
                text = event_text(sender, 0)
                obj = agent_message(api, conversation, text, now_ms)
            out.append(_event(sim, conversation, sender, text, obj))
    return out


def by_conversation(events: Sequence[Event]) -> dict[str, list[Event]]:
    lanes: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        lanes[event.conversation].append(event)
    return lanes


# As 8x8 does, a 5xx is retried with the same event id; a 4xx is not.
RETRY_DELAYS_S = (0.1, 0.2, 0.5, 1.0, 2.0)


async def _post(http: aiohttp.ClientSession, url: str, event: Event, sent: Sent) -> None:
    for delay in (*RETRY_DELAYS_S, None):
        async with http.post(url, data=event.body, headers=event.headers) as answer:
            await answer.read()
            status = answer.status
        if status == 200:
            break
        if status < 500 or delay is None:
            sent.errors += 1
            break
        sent.retried += 1
        await asyncio.sleep(delay)
    sent.last_answer = time.monotonic()


async def saturated(url: str, events: Sequence[Event], in_flight: int) -> Sent:
    """Everything as fast as `in_flight` senders go; each sender owns some conversations."""
    lanes = list(by_conversation(events).values())
    groups: list[list[list[Event]]] = [[] for _ in range(min(in_flight, len(lanes)))]
    for i, lane in enumerate(lanes):
        groups[i % len(groups)].append(lane)
    sent = Sent()
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def sender(group: list[list[Event]]) -> None:
            # Round-robin over this sender's conversations, each in its own order.
            for event in _interleave(group):
                sent.times[event.text] = time.monotonic()
                await _post(http, url, event, sent)

        sent.first = time.monotonic()
        await asyncio.gather(*(sender(g) for g in groups))
    return sent


def _interleave(lanes: list[list[Event]]) -> list[Event]:
    out: list[Event] = []
    longest = max((len(lane) for lane in lanes), default=0)
    for i in range(longest):
        out.extend(lane[i] for lane in lanes if i < len(lane))
    return out


async def paced(url: str, events: Sequence[Event], rate: float) -> Sent:
    """Open loop: event i is due at start + i / rate whatever the answers before it (latency is
    counted from then); only an unanswered event of the same conversation holds it back. Each
    event's task is started at its due time, not all at the start: making thousands of tasks
    up front took longer than the first events' lead, and they went out late, in a burst
    (~180 ms of every side's p99 at 1,900 ev/s was the runner's own)."""
    sent = Sent()
    previous: dict[str, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(event: Event, before: asyncio.Future[None] | None,
                      done: asyncio.Future[None]) -> None:  # fmt: skip
            if before is not None:
                await before
            try:
                await _post(http, url, event, sent)
            finally:
                done.set_result(None)

        tasks = []
        start = time.monotonic() + 0.05
        sent.first = start
        for i, event in enumerate(events):
            due = start + i / rate
            sent.times[event.text] = due
            lead = due - time.monotonic()
            if lead > 0:
                await asyncio.sleep(lead)
            done = loop.create_future()
            tasks.append(loop.create_task(one(event, previous.get(event.conversation), done)))
            previous[event.conversation] = done
        await asyncio.gather(*tasks)
    return sent
