"""Runs: consecutive agent messages of one conversation, delivered together (pure decisions).

At saturation one read of a partition stream holds several agent messages of one conversation.
Order is owed per conversation only, so such messages can reach Rasa in one `tracker/events`
call and be acknowledged by one script, ahead of the other conversations' entries read with
them, as long as nothing of their own conversation comes between them. Two rules decide it:

- `plan_units`, before any I/O: how a read batch is worked, unit by unit. A run is the leading
  agent messages of a conversation in the batch (at least `MIN_RUN`), for a conversation with a
  known sender and nothing held. Anything else of that conversation (a state change, a timer,
  an entry that cannot be read) and everything of it after that in the batch goes one entry at
  a time, in stream order, so no entry is ever delivered before an earlier one of its
  conversation.
- `joins`, when a unit is dispatched behind one still waiting in its lane (`pipeline.py`):
  agent messages of one conversation, each read or taken on its own while an earlier push of
  their lane is in flight, are worked as one run too.
- `say_only_prefix`, once the sender's record is read: how many of a run's messages the state
  machine turns into words for the user and nothing else (`say_only`). The first message that
  asks for more (an implied join, a message ignored, a state change) and the rest of the run go
  one entry at a time, after the messages before it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bridge.eightbyeight.events import ChatEvent
from bridge.handoff import ArmTimer, DisarmTimer, Handoff, SayToUser, Step, Timing, on_event
from bridge.ids import ConversationId

# A single message gains nothing from the run path (one claim, one push, one ack either way),
# and the entry-at-a-time path is the one every other case goes through.
MIN_RUN = 2


@dataclass(frozen=True, slots=True)
class Item:
    """What `plan_units` needs of one entry of a read batch."""

    conversation: ConversationId | None  # None: the entry could not be read
    message: bool  # an agent message: a candidate for a run


def plan_units(items: Sequence[Item], ready: Collection[ConversationId]) -> list[tuple[int, ...]]:
    """The batch's entries (by index) grouped into units of work, in the order to work them: a
    run (two or more indexes, one conversation) where its first entry stands, every other entry
    alone. `ready`: the conversations with a known sender and nothing held."""
    leading = _leading_messages(items, ready)
    runs = {run[0]: run for run in leading.values() if len(run) >= MIN_RUN}
    in_runs = {i for run in runs.values() for i in run}
    units: list[tuple[int, ...]] = []
    for i in range(len(items)):
        if i in runs:
            units.append(runs[i])
        elif i not in in_runs:
            units.append((i,))
    return units


def joins(queued: Sequence[Item], behind: Sequence[Item], most: int) -> bool:
    """Whether a unit waiting in a lane (not begun) and the unit dispatched right behind it may
    be worked as one run: every entry of both an agent message of one conversation, `most` at
    most. Messages that pile up behind a stalled push then go in one push, as when read
    together; the run path itself goes one at a time for a conversation it may not run (no
    sender, or held)."""
    both = [*queued, *behind]
    first = both[0].conversation if both else None
    return (
        first is not None
        and len(both) <= most
        and all(item.message and item.conversation == first for item in both)
    )


def _leading_messages(
    items: Sequence[Item], ready: Collection[ConversationId]
) -> dict[ConversationId, tuple[int, ...]]:
    """Per ready conversation, its agent messages before anything else of it in the batch."""
    leading: dict[ConversationId, list[int]] = {}
    closed: set[ConversationId] = set()
    for i, item in enumerate(items):
        c = item.conversation
        if c is None or c not in ready or c in closed:
            continue
        if item.message:
            leading.setdefault(c, []).append(i)
        else:
            closed.add(c)
    return {c: tuple(run) for c, run in leading.items()}


def say_only(before: Handoff, step: Step) -> bool:
    """The step only puts words in front of the user (timers it arms are stored after the
    push, as on the one-at-a-time path): no intent to trigger, no interaction to end, the same
    state. Record updates (when the agent spoke, their name) are saved with the run."""
    return (
        step.handoff.state is before.state
        and any(isinstance(e, SayToUser) for e in step.effects)
        and all(isinstance(e, SayToUser | ArmTimer | DisarmTimer) for e in step.effects)
    )


def say_only_prefix(
    handoff: Handoff, events: Sequence[ChatEvent], now_ms: int, timing: Timing
) -> list[Step]:
    """The state machine's steps for the run's leading events that are `say_only`, each applied
    to the record the one before left (the last step's handoff is the record to save)."""
    steps: list[Step] = []
    for event in events:
        step = on_event(handoff, event, now_ms, timing)
        if not say_only(handoff, step):
            break
        steps.append(step)
        handoff = step.handoff
    return steps
