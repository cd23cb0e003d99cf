"""A partition's consumer at rest (idle at its stream's end), as the door sees it.

While it rests, the door may do in its own turn what the consumer's next turn would do for the
entry it just handed (`Relay.hand`: take it, dispatch it to its lane), and may ask its enqueue
to take the relay's first step for it (`Relay.plan`, `begun.py`). `Rest` is what both look at,
made anew for each rest; `Ticket` is what a plan remembers of it, to tell at the hand whether
anything of the sender was dispatched in between.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bridge.ids import ConversationId
from bridge.relay.handed import Intake
from bridge.relay.lanes import Key
from bridge.relay.pipeline import Pipeline


@dataclass(eq=False)
class Rest:
    """One rest of a partition's consumer: its state, and what the door dispatched during it."""

    held: dict[ConversationId, int]
    intake: Intake
    lanes: Pipeline[Any]
    consumer: asyncio.Task[Any] | None
    dispatched: Counter[Key] = field(default_factory=Counter)  # by the door, per lane key
    # Plans made during this rest and not handed yet (`Relay.plan`): one at a time. A second
    # entry enqueued meanwhile would most often come behind the first before the consumer has
    # taken it, and its step be refused (stream order): planned for nothing, at saturation
    # nearly always. A plan the door does not hand (a duplicate, a failure) is given back
    # (`Relay.unplan`).
    planned: int = 0


@dataclass(frozen=True, eq=False)
class Ticket:
    """A plan's memory of the rest it was made in: which rest, and how many units the door
    had dispatched to the sender's lane during it (the lane was idle then)."""

    rest: Rest
    key: Key
    dispatched: int

    def same_consumer(self, intake: Intake) -> bool:
        return intake is self.rest.intake

    def undisturbed(self, rest: Rest | None) -> bool:
        """Whether the consumer has rested since, dispatching nothing of the sender."""
        return rest is self.rest and rest.dispatched[self.key] == self.dispatched
