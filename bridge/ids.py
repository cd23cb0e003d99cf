"""Identifier types for the two id spaces we bridge, so they can never be swapped silently."""

from typing import NewType

SenderId = NewType("SenderId", str)
"""A Rasa conversation (sender) id."""

ConversationId = NewType("ConversationId", str)
"""An 8x8 conversation id (opaque string; never parsed)."""

EventId = NewType("EventId", str)
"""An 8x8 webhook event id (`x-8x8-event-id`), stable across 8x8's retries."""
