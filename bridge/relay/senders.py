"""Which Rasa sender each conversation belongs to, as the relay's consumers look it up: from the
store, cached (a conversation's sender never changes once linked, so the cache is never stale;
it is bounded, least recently used out)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from bridge.ids import ConversationId, SenderId
from bridge.store.base import Store

CACHED_MOST = 100_000


class Senders:
    def __init__(self, store: Store, most: int = CACHED_MOST) -> None:
        self._store = store
        self._most = most
        self._cache: OrderedDict[str, SenderId] = OrderedDict()

    def cached(self, cid: ConversationId) -> SenderId | None:
        """The sender if cached (no round trip), else None."""
        sender = self._cache.get(cid)
        if sender is not None:
            self._cache.move_to_end(cid)
        return sender

    async def of(self, cid: ConversationId) -> SenderId | None:
        """The sender, looked up when not cached; None while the conversation is not linked."""
        sender = self.cached(cid)
        if sender is not None:
            return sender
        sender = await self._store.sender_of(cid)
        if sender is not None:
            self._cache[cid] = sender
            if len(self._cache) > self._most:
                self._cache.popitem(last=False)
        return sender

    async def known(self, conversations: set[ConversationId]) -> dict[ConversationId, SenderId]:
        """The known senders of `conversations`: the cached ones, the others looked up at once."""
        known = {c: s for c in conversations if (s := self.cached(c)) is not None}
        missing = [c for c in conversations if c not in known]
        if not missing:  # the common case: every look at a paced load plans from the cache
            return known
        found = await asyncio.gather(*(self.of(c) for c in missing))
        known.update((c, s) for c, s in zip(missing, found, strict=True) if s is not None)
        return known
