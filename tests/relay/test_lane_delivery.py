"""Lanes through the consumer (bridge/relay/lanes.py): the conversations of one read batch of
one partition delivered at the same time, each in its own order, and a lane's failure or stall
leaving the others' deliveries whole."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.errors import StoreUnavailable

from .conftest import JOINED, Call, Rig, RigFactory

# Bounds a wait for a signal that only a broken relay never gives (not a pause: the test goes
# on as soon as the signal comes).
_SIGNAL_S = 5.0


async def linked(make_rig: RigFactory, **conversations: str) -> Rig:
    """One partition, each conversation linked to its sender, and no relay consuming yet:
    what is enqueued next is read in one batch by the first relay started."""
    rig = await make_rig()
    for conversation, sender in conversations.items():
        await rig.link(sender, conversation)
    return rig


async def signalled(event: asyncio.Event) -> None:
    async with asyncio.timeout(_SIGNAL_S):
        await event.wait()


async def test_a_stalled_push_does_not_hold_up_another_conversation_of_its_batch(
    make_rig: RigFactory,
) -> None:
    rig = await linked(make_rig, c1="ada", c2="bob")
    stalled, release, bob_shown = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def stall_ada(call: Call) -> None:
        if call.sender == "ada":
            stalled.set()
            await release.wait()
        elif call.text == "go ahead":
            bob_shown.set()

    rig.rasa.on_push = stall_ada
    await rig.say("c1", "wait for me")  # read first, in the same batch as bob's
    await rig.say("c2", "go ahead")
    await rig.started()
    await signalled(stalled)
    await signalled(bob_shown)  # delivered while ada's push is still in Rasa's hands
    assert rig.rasa.timeline("bob") == [JOINED, "go ahead"]
    assert [c.intent or c.text for c in rig.rasa.pushes("ada")] == ["EXTERNAL_agent_joined"]
    release.set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "wait for me"]
    assert await rig.store.read_events(0, 10) == []


async def test_a_stalled_conversation_keeps_its_order_while_others_pass_it(
    make_rig: RigFactory,
) -> None:
    rig = await linked(make_rig, c1="ada", c2="bob", c3="cy")
    release, others_done = asyncio.Event(), asyncio.Event()
    last = {"b3", "c2"}  # the other conversations' last messages

    async def stall_ada(call: Call) -> None:
        if call.sender == "ada":
            await release.wait()
        last.discard(call.text or "")
        if not last:
            others_done.set()

    rig.rasa.on_push = stall_ada
    await rig.join("c1")  # ada's first: her messages after it are units of their own
    for k in range(1, 4):  # interleaved in the stream
        await rig.say("c1", f"a{k}")
        await rig.say("c2", f"b{k}")
        if k < 3:
            await rig.say("c3", f"c{k}")
    await rig.started()
    await signalled(others_done)
    assert len(rig.rasa.pushes("ada")) == 1  # nothing of ada's overtook the stalled push
    release.set()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "a1", "a2", "a3"]
    assert rig.rasa.timeline("bob") == [JOINED, "b1", "b2", "b3"]
    assert rig.rasa.timeline("cy") == [JOINED, "c1", "c2"]


async def test_a_lane_that_fails_lets_the_others_finish_their_pushes(
    make_rig: RigFactory,
) -> None:
    """ada's ack fails (Redis) while bob's push is in Rasa's hands: bob's delivery ends as
    it would have (pushed once, acknowledged, never looked for again), then ada's entry is
    read again and found in the tracker."""
    rig = await linked(make_rig, c1="ada", c2="bob")
    bob_pushing, ada_failed = asyncio.Event(), asyncio.Event()
    ack_message = rig.store.ack_message

    async def failing_for_ada(
        partition: int, entry_id: str, owner: str, *args: Any, **kwargs: Any
    ) -> bool:
        if args[0] == "c1" and not ada_failed.is_set():
            await bob_pushing.wait()
            ada_failed.set()
            raise StoreUnavailable("redis unavailable: ConnectionError")
        return await ack_message(partition, entry_id, owner, *args, **kwargs)

    async def hold_bob_until_ada_failed(call: Call) -> None:
        if call.text == "go ahead" and not bob_pushing.is_set():
            # ada's entries are read first: the consumer names their lane's task lane0.
            [ada_lane] = [t for t in asyncio.all_tasks() if t.get_name() == "relay-p0-lane0"]
            bob_pushing.set()
            await asyncio.wait({ada_lane})  # its failure is out before this push goes on

    rig.store.ack_message = failing_for_ada  # type: ignore[method-assign]
    rig.rasa.on_push = hold_bob_until_ada_failed
    await rig.say("c1", "hi")
    await rig.say("c2", "go ahead")
    await rig.started()
    await rig.idle()
    bob = [c.kind if c.kind == "lookup" else c.intent or c.text for c in rig.rasa.calls
           if c.sender == "bob"]  # fmt: skip
    assert bob == ["EXTERNAL_agent_joined", "go ahead"]
    assert rig.rasa.timeline("ada") == [JOINED, "hi"]  # found in the tracker, not pushed again
    assert [c.kind for c in rig.rasa.calls if c.sender == "ada"] == ["intent", "bot", "lookup"]
    assert await rig.store.read_events(0, 10) == []
