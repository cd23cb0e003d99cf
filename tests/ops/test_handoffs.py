"""`status`, `end`, `forget` and `dead-letters` against the simulator, Redis and a bridge."""

from __future__ import annotations

import json

from bridge import logs
from bridge.handoff import Handoff, State
from bridge.ids import SenderId
from bridge.store import admin
from bridge.store.base import partition_of
from tests.ops.conftest import World, closed_port
from tests.support.waiting import eventually

LEFT = "#EXTERNAL_agent_left"


async def _state(world: World, sender: str) -> State:
    record = await world.runtime.store.load_handoff(SenderId(sender))
    return Handoff.from_fields(record.fields).state if record else State.BOT


async def test_status_lists_live_handoffs_backlog_relays_and_outbox(world: World) -> None:
    cid = await world.live_handoff("kim")
    queued = await world.live_handoff("lou", agent=None)
    world.sim.faults.fail_next("send_message", count=20, status=503)
    await world.runtime.service.forward(SenderId("kim"), "still there?")  # waits in the outbox
    ran = await world.cli("status")
    assert ran.code == 0, ran.err
    assert "Live handoffs: 2" in ran.out
    assert f"kim     {cid}" in ran.out.replace(" " * 10, " " * 4) or (
        "kim" in ran.out and cid in ran.out
    )
    data = (await world.cli("status", "--json")).json()
    by_sender = {h["sender"]: h for h in data["handoffs"]}
    assert by_sender["kim"]["state"] == "with_agent" and by_sender["kim"]["agent"]
    assert by_sender["lou"]["conversation"] == queued and by_sender["lou"]["state"] in (
        "requested",
        "queued",
    )
    # the hash serve's logs use (its key derives from the API key): lines can be looked up
    logs.set_id_key(world.runtime.settings.log_id_secret())
    try:
        assert by_sender["kim"]["log_id"] == logs.mask_sender("kim")
    finally:
        logs.set_id_key(None)
    assert data["outbox"]["messages"] == 1 and data["outbox"]["by_sender"] == {"kim": 1}
    assert [r["owner"] for r in data["relays"]] == [world.runtime.relay.owner]
    assert len(data["partitions"]) == world.runtime.store.partitions
    # an ended handoff leaves the list (the index follows the record)
    await world.runtime.service.end(SenderId("lou"))
    data = (await world.cli("status", "--json")).json()
    assert [h["sender"] for h in data["handoffs"]] == ["kim"]


async def test_status_index_drops_stale_entries(world: World) -> None:
    store = world.runtime.store
    await world.live_handoff("kim", agent=None)
    # the record stops being live behind the index's back (as after a crash between the two)
    await store.redis.hset(store.keys.record(SenderId("kim")), "state", "ended")
    assert (await world.cli("status", "--json")).json()["handoffs"] == []
    assert await store.redis.exists(*store.keys.live_index()) == 0  # every shard emptied


async def test_status_redis_down_and_no_redis(world: World) -> None:
    ran = await world.cli("status", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    assert ran.code == 3 and "redis unavailable" in ran.err
    world.monkeypatch.delenv("REDIS_URL")
    world.env = {k: v for k, v in world.env.items() if k != "REDIS_URL"}
    ran = await world.cli("status")
    assert ran.code == 2 and "REDIS_URL is unset" in ran.err


async def test_end_ends_both_sides_and_tells_the_user(world: World) -> None:
    cid = await world.live_handoff("kim")
    ran = await world.cli("end", "kim")
    assert ran.code == 0, ran.err + ran.out
    assert "the user was told" in ran.out
    assert await _state(world, "kim") is State.ENDED
    assert world.rasa.timeline("kim")[-1] == LEFT
    conv = world.sim.conversations[cid]
    await eventually(lambda: conv.state != "active" or not conv.agent, 5, "8x8 side left")
    ran = await world.cli("end", "kim")
    assert ran.code == 4 and "no live handoff" in ran.err
    assert (await world.cli("end", "nobody")).code == 4


async def test_end_while_8x8_down_queues_the_leave(world: World) -> None:
    await world.live_handoff("kim")
    world.sim.faults.fail_next("leave", count=20, status=503)
    ran = await world.cli("end", "kim", "--json")
    assert ran.code == 0
    data = ran.json()
    assert data["leave_waiting_in_outbox"] and data["user_told"]
    assert await world.runtime.store.outbox_peek(SenderId("kim")) is not None


async def test_end_while_rasa_down(world: World) -> None:
    await world.live_handoff("kim")
    ran = await world.cli("end", "kim", RASA_URL=f"http://127.0.0.1:{closed_port()}")
    assert ran.code == 1 and "NOT told" in ran.out
    assert await _state(world, "kim") is State.ENDED


async def _dead_letter_for(world: World, sender: str, text: str) -> str:
    """A live handoff whose agent message Rasa refuses for good: the relay dead-letters it."""
    cid = await world.live_handoff(sender)
    world.rasa.down_status = 400
    await world.sim.desk.say(cid, text)
    store = world.runtime.store
    letters: list = []

    async def parked() -> bool:
        letters[:] = await store.list_dead_letters()
        return bool(letters)

    for _ in range(200):
        if await parked():
            break
        await __import__("asyncio").sleep(0.05)
    world.rasa.down_status = None
    assert letters, "no dead letter"
    return f"{letters[0].partition}:{letters[0].dead_id}"


async def test_dead_letters_list_show_replay(world: World) -> None:
    ident = await _dead_letter_for(world, "kim", "your refund is on its way")
    ran = await world.cli("dead-letters", "list")
    assert ran.code == 0 and ident in ran.out and "rejected_by_rasa" in ran.out
    shown = await world.cli("dead-letters", "show", ident, "--json")
    assert shown.json()["event"]["text"] == "your refund is on its way"
    assert (await world.cli("status", "--json")).json()["dead_letters"] == 1
    ran = await world.cli("dead-letters", "replay", ident)
    assert ran.code == 0 and "replayed 1" in ran.out
    await eventually(lambda: "your refund is on its way" in world.rasa.texts("kim"), 10, "replay")
    assert world.rasa.texts("kim").count("your refund is on its way") == 1
    assert (await world.cli("dead-letters", "list", "--json")).json() == []
    missing = await world.cli("dead-letters", "show", ident)
    assert missing.code == 4 and "no dead letter" in missing.err
    for bad in ("x", "99:1-0", "0:nope"):
        assert (await world.cli("dead-letters", "replay", bad)).code == 4


async def test_dead_letters_replay_all_and_purge(world: World) -> None:
    await _dead_letter_for(world, "kim", "one")
    assert (await world.cli("dead-letters", "replay", "--all")).code == 0
    await eventually(lambda: world.rasa.texts("kim") == ["one"], 10, "replayed")
    await _dead_letter_for(world, "lou", "two")
    kept = await world.cli("dead-letters", "purge", "--older-than", "1h", "--json")
    assert kept.json() == {"purged": 0}
    gone = await world.cli("dead-letters", "purge", "--older-than", "0s", "--json")
    assert gone.json() == {"purged": 1}
    assert await world.runtime.store.list_dead_letters() == []
    bad = await world.cli("dead-letters", "purge", "--older-than", "soon")
    assert bad.code == 2


async def test_dead_letters_trimmed_by_age_as_new_ones_arrive(world: World) -> None:
    store = world.runtime.store
    await _dead_letter_for(world, "kim", "old")
    await __import__("asyncio").sleep(0.01)
    store.dead_letter_max_age_ms = 5  # what was parked before this is too old now
    await _dead_letter_for(world, "lou", "new")
    texts = [json.loads(d.entry.payload)["text"] for d in await store.list_dead_letters()]
    assert texts == ["new"]


async def test_forget_erases_the_user(world: World) -> None:
    store = world.runtime.store
    ident = await _dead_letter_for(world, "kim", "private words")
    cid = (await store.load_handoff(SenderId("kim"))).fields["conversation_id"]  # type: ignore[union-attr]
    refused = await world.cli("forget", "kim")
    assert refused.code == 1 and "end it first" in refused.err
    world.sim.faults.fail_next("leave", count=20, status=503)
    await world.cli("end", "kim")  # the leave waits in the outbox: forget drops it too
    # The digest of what the agent said (the relay's message identity) is about the user too.
    said = store.keys.delivered(partition_of(cid, store.partitions), cid)
    assert await store.redis.exists(said)
    ran = await world.cli("forget", "kim", "--json")
    assert ran.code == 0, ran.err
    data = ran.json()
    assert data["record"] and data["conversations"] == [cid] and data["dead_letters"] == 1
    assert data["outbox_items"] == 1
    assert await store.load_handoff(SenderId("kim")) is None
    assert await store.redis.get(store.keys.conversation(cid)) is None
    assert await store.outbox_peek(SenderId("kim")) is None
    assert not await store.redis.exists(said, store.keys.outbox_fence(SenderId("kim")))
    assert await admin.dead_letter(store, int(ident.split(":")[0]), ident.split(":")[1]) is None
    again = await world.cli("forget", "kim")
    assert again.code == 4 and "holds nothing" in again.err


async def test_replay_of_a_message_that_did_reach_the_user_is_not_shown_twice(world: World) -> None:
    """Given up after its push landed (the answer was lost, then Rasa went down): the replay
    re-enters the stream as the original event, and the relay finds its marker in the tracker."""
    cid = await world.live_handoff("kim")
    world.rasa.lose_next_responses = 1
    await world.sim.desk.say(cid, "seen once")
    await eventually(lambda: world.rasa.texts("kim") == ["seen once"], 10, "the landed push")
    world.rasa.down_status = 503  # the retry's tracker check fails: the attempts run out
    store = world.runtime.store
    for _ in range(200):
        if await store.list_dead_letters():
            break
        await __import__("asyncio").sleep(0.05)
    world.rasa.down_status = None
    [letter] = await store.list_dead_letters()
    assert letter.reason == "max_attempts"
    ran = await world.cli("dead-letters", "replay", f"{letter.partition}:{letter.dead_id}")
    assert ran.code == 0
    skipped = "handoff_relay_already_delivered_total"
    registry = world.runtime.metrics.registry
    await eventually(
        lambda: (registry.get_sample_value(skipped) or 0) == 1, 10, "the tracker check"
    )
    assert world.rasa.texts("kim") == ["seen once"]
    assert await store.list_dead_letters() == []
