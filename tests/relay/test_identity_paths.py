"""Every path that can deliver an agent message meets the others on its identity: the webhook,
dead-letter replay and recovery from 8x8's message list. None doubles or skips a message."""

from __future__ import annotations

from bridge.ids import ConversationId
from bridge.rasa.client import error_for_status
from bridge.relay.identity import MessageIdentity, listed_identities, text_digest
from bridge.relay.recovery import Offer, message_state, offer_message
from bridge.store.base import MessageState

from .conftest import JOINED, LANDED, Rig, RigFactory, said

C = ConversationId("c1")


def listed(*texts: str) -> list[MessageIdentity]:
    return listed_identities(texts)


async def offer(rig: Rig, identity: MessageIdentity, text: str) -> Offer:
    return await offer_message(rig.store, C, identity, said("c1", text), 3600)


async def ready(make_rig: RigFactory, **config: float) -> Rig:
    rig = await make_rig(**config)
    await rig.link("ada", "c1")
    await rig.started()
    await rig.join("c1")
    await rig.idle()
    return rig


async def test_recovery_delivers_only_what_the_webhook_did_not(make_rig: RigFactory) -> None:
    rig = await ready(make_rig)
    await rig.say("c1", "ok")  # the webhook brought one "ok"; 8x8's list shows two
    await rig.idle()
    first, second = listed("ok", "ok")
    assert await offer(rig, first, "ok") is Offer.DELIVERED
    assert await offer(rig, second, "ok") is Offer.ENQUEUED
    assert await offer(rig, second, "ok") is Offer.QUEUED_ALREADY  # offered twice: queued once
    rig.kick()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "ok", "ok"]
    assert await message_state(rig.store, C, second) is MessageState.DELIVERED
    assert await offer(rig, second, "ok") is Offer.DELIVERED


async def test_a_listed_message_queued_behind_its_webhook_twin_is_not_pushed(
    make_rig: RigFactory,
) -> None:
    rig = await ready(make_rig)
    await rig.relays[0].stop()  # both wait in the stream: the webhook's event first
    await rig.say("c1", "hello")
    [identity] = listed("hello")
    assert await offer(rig, identity, "hello") is Offer.ENQUEUED
    await rig.started("relay-b")
    await rig.idle(rig.relays[1])
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]
    assert rig.metrics.relay_skipped._value.get() == 1
    assert rig.metrics.relay_outcomes.labels("duplicate")._value.get() == 1  # counted as done


async def test_a_dead_lettered_message_is_left_to_replay_and_replay_delivers_it_once(
    make_rig: RigFactory,
) -> None:
    rig = await ready(make_rig)
    rig.rasa.failures = [error_for_status(400, "")]
    await rig.say("c1", "hello")
    await rig.idle()
    [identity] = listed("hello")
    assert await offer(rig, identity, "hello") is Offer.OWNED  # the dead letter owns it
    [dead] = await rig.store.list_dead_letters()
    assert await rig.store.replay_dead_letter(dead.partition, dead.dead_id)
    rig.kick()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]
    assert await message_state(rig.store, C, identity) is MessageState.DELIVERED


async def test_replaying_a_message_whose_push_had_landed_does_not_push_it_again(
    make_rig: RigFactory,
) -> None:
    rig = await ready(make_rig, max_attempts=1)
    rig.rasa.failures = [LANDED]  # reached the user, but the answer was lost: dead-lettered
    await rig.say("c1", "hello")
    await rig.idle()
    [dead] = await rig.store.list_dead_letters()
    assert await rig.store.replay_dead_letter(dead.partition, dead.dead_id)
    rig.kick()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]
    assert len([c for c in rig.rasa.pushes("ada") if c.text == "hello"]) == 1


async def test_a_listed_message_behind_a_webhook_twin_that_died_is_left_to_replay(
    make_rig: RigFactory,
) -> None:
    """Offered while its twin still waited; the twin's push then reached the user before it was
    dead-lettered: the listed entry must not push it again (the dead letter owns it)."""
    rig = await ready(make_rig, max_attempts=1)
    await rig.relays[0].stop()
    await rig.say("c1", "hello")
    [identity] = listed("hello")
    assert await offer(rig, identity, "hello") is Offer.ENQUEUED
    rig.rasa.failures = [LANDED]
    await rig.started("relay-b")
    await rig.idle(rig.relays[1])
    assert rig.rasa.timeline("ada") == [JOINED, "hello"]
    assert [d.reason for d in await rig.store.list_dead_letters()] == ["max_attempts"]
    assert await message_state(rig.store, C, identity) is MessageState.OWNED


async def test_a_recovered_message_pushes_under_its_identity(make_rig: RigFactory) -> None:
    rig = await ready(make_rig)
    [identity] = listed("lost by 8x8")
    assert await offer(rig, identity, "lost by 8x8") is Offer.ENQUEUED
    rig.kick()
    await rig.idle()
    assert rig.rasa.timeline("ada") == [JOINED, "lost by 8x8"]
    [push] = [c for c in rig.rasa.pushes("ada") if c.text == "lost by 8x8"]
    assert push.marker is not None and push.marker.startswith(f"msg:{text_digest('lost by 8x8')}:1")
