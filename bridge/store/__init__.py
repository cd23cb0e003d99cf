"""The bridge's state: one `Store` interface, one Redis implementation, opened by URL."""

from bridge.store.base import Claim, DeadLetter, HandoffRecord, Store, StreamEntry, partition_of
from bridge.store.embedded import open_store
from bridge.store.redis_store import RedisStore

__all__ = [
    "Claim",
    "DeadLetter",
    "HandoffRecord",
    "RedisStore",
    "Store",
    "StreamEntry",
    "open_store",
    "partition_of",
]
