"""Whether the relay has anything left to do, seen from the store alone.

An entry stays in its stream or hold list until the step that finishes it (ack, unhold, dead
letter), which comes after its last push: so "no entry that can move" means nothing pending
*and* nothing in flight, across every process on the store. Tests (and anyone draining a
deployment) wait on this instead of sleeping.
"""

from __future__ import annotations

import asyncio

from bridge.relay.decisions import HeldFate, held_fate
from bridge.store.base import Store


async def work_left(store: Store, now_ms: int) -> bool:
    """True while a stream holds an entry, or a held conversation can move (its sender is
    known now, or its deadline has passed). Held conversations still waiting are not work."""
    found = await asyncio.gather(
        *(_partition_busy(store, p, now_ms) for p in range(store.partitions))
    )
    return any(found)


async def _partition_busy(store: Store, partition: int, now_ms: int) -> bool:
    if await store.read_events(partition, 1):
        return True
    for cid, deadline in (await store.held_conversations(partition)).items():
        known = await store.sender_of(cid) is not None
        if held_fate(known, now_ms, deadline) is not HeldFate.WAIT:
            return True
    return False
