"""What a path other than the webhook calls to deliver an agent message: "is message X of
conversation C delivered? If not, enqueue it through C's stream".

Recovery from 8x8's message list (and anything else that finds agent messages) goes through
here, so that it meets the webhook's events in the one ordered, fenced consumer of the
conversation's partition, which checks and records each message's identity
(bridge/relay/identity.py): nothing is delivered twice, nothing skipped.
"""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum

from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.ids import ConversationId
from bridge.relay.identity import MessageIdentity, message_event_id
from bridge.store.base import MessageState, Store, partition_of


class Offer(StrEnum):
    DELIVERED = "delivered"  # recorded as delivered already: nothing to do
    # An entry has taken it: being delivered, held, or in the dead letters (where replay, not
    # recovery, decides its fate).
    OWNED = "owned"
    ENQUEUED = "enqueued"  # now in the conversation's stream
    QUEUED_ALREADY = "queued_already"  # offered before and still claimed: not enqueued twice


async def message_state(
    store: Store, conversation: ConversationId, identity: MessageIdentity
) -> MessageState:
    """Is message X of conversation C delivered (or being delivered by some entry)?"""
    partition = partition_of(conversation, store.partitions)
    return await store.message_state(partition, conversation, identity.digest, identity.ordinal)


async def offer_message(
    store: Store,
    conversation: ConversationId,
    identity: MessageIdentity,
    message: ChatEvent,
    dedupe_ttl_s: int,
) -> Offer:
    """Enqueue a listed agent message unless delivered. `identity` comes from
    `identity.listed_identities` over the conversation's whole list, oldest first; `message` is
    what the user should see (text, agent, attachments). The relay checks again before
    pushing, so a message delivered between this check and its turn is not pushed twice.
    Raises StoreUnavailable like the store."""
    state = await message_state(store, conversation, identity)
    if state is not MessageState.UNKNOWN:
        return Offer.DELIVERED if state is MessageState.DELIVERED else Offer.OWNED
    event = replace(message, kind=EventKind.AGENT_MESSAGE, conversation_id=conversation)
    partition = partition_of(conversation, store.partitions)
    enqueued = await store.enqueue_event(
        partition, message_event_id(identity), event.to_json(), dedupe_ttl_s
    )
    return Offer.ENQUEUED if enqueued else Offer.QUEUED_ALREADY
