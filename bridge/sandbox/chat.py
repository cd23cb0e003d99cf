"""The customer's side of the page: what reached the user's channel, per sender, in order.

Every bot message arrives the way it would reach a real front end: Rasa's callback channel
POSTs `{"recipient_id", "text"}`. That body does not say who wrote the text (Rasa drops a bot
event's metadata on this channel), so `ChatLabels` tells the page which messages were the
agent's words (the simulator's desk recorded them) and which are the handoff's notices (the
domain's `utter_handoff_*` responses). The labels only style the page; nothing depends on them.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bridge.agent_names import format_agent_message
from bridge.simulator import Simulator
from bridge.simulator.state import SimMessage

ChatItem = dict[str, Any]  # {"id", "kind": "bot" | "agent" | "notice" | "typing", ...}


class ChatHub:
    """A bounded log per sender and a wake-up for its watchers (the page's event stream)."""

    def __init__(self, keep: int = 500) -> None:
        self._keep = keep
        self._logs: dict[str, list[ChatItem]] = {}
        self._last_id: Counter[str] = Counter()
        self._changed: dict[str, asyncio.Event] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, sender: str, item: ChatItem) -> ChatItem:
        self._last_id[sender] += 1
        item = {**item, "id": self._last_id[sender]}
        log = self._logs.setdefault(sender, [])
        log.append(item)
        del log[: -self._keep]
        self._wake(sender)
        return item

    def since(self, sender: str, after: int) -> list[ChatItem]:
        """What the sender's channel got after item `after` (0: everything still kept)."""
        return [item for item in self._logs.get(sender, ()) if item["id"] > after]

    async def wait(self, sender: str, timeout: float) -> bool:  # noqa: ASYNC109 - a plain wait
        """Until something is published for `sender` or the hub closes; False on timeout."""
        changed = self._changed.setdefault(sender, asyncio.Event())
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self._closed = True
        for sender in list(self._changed):
            self._wake(sender)

    def _wake(self, sender: str) -> None:
        changed = self._changed.pop(sender, None)
        if changed is not None:
            changed.set()


class ChatLabels:
    """Which kind of message reached the user: the agent's, a handoff notice, or the bot's."""

    def __init__(
        self,
        sim: Simulator,
        notice_texts: Iterable[str],
        conversation_of: Callable[[str], Awaitable[str | None]],
        message_format: str = "{text}",
    ) -> None:
        self._sim = sim
        self._format = message_format  # HANDOFF_AGENT_MESSAGE_FORMAT: how agent words arrive
        self._notices = [_template(text) for text in notice_texts]
        self._conversation_of = conversation_of
        self._matched: dict[str, Counter[str]] = {}  # per conversation: agent texts shown

    async def label(self, sender: str, text: str) -> ChatItem:
        agent = await self._agent_who_said(sender, text)
        if agent is not None:
            return {"kind": "agent", "text": text, "agent": agent}
        if any(pattern.fullmatch(text) for pattern in self._notices):
            return {"kind": "notice", "text": text}
        return {"kind": "bot", "text": text}

    async def _agent_who_said(self, sender: str, text: str) -> str | None:
        """The agent's name, when the desk wrote `text` in the sender's conversation more
        often than it has been shown so far (an agent may say the same thing twice)."""
        cid = await self._conversation_of(sender)
        conv = self._sim.conversations.get(cid) if cid else None
        if cid is None or conv is None:
            return None
        said = [m for m in conv.messages if m.author_type == "agent" and self._shown_as(m) == text]
        shown = self._matched.setdefault(cid, Counter())
        if len(said) <= shown[text]:
            return None
        shown[text] += 1
        return said[shown[text] - 1].author_name or "Agent"

    def _shown_as(self, message: SimMessage) -> str | None:
        return format_agent_message(self._format, message.author_name, message.text)


def _template(text: str) -> re.Pattern[str]:
    """A response text as a pattern: `{slot}` placeholders match any name."""
    parts = re.split(r"\{[^\n{}]+?\}", text)
    return re.compile(".+?".join(re.escape(part) for part in parts), re.DOTALL)
