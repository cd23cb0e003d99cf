"""What the user is told about their wait: the queue's name and, where 8x8's Real-time Metrics
API answers, how many are ahead and the usual wait.

8x8 gives no queue position or waiting-time estimate for one conversation (spec §7): both are
estimates from the queue's figures, worded as such ("about", "usually"). People ahead is the
number waiting minus this user (whose interaction is queued when QUEUED arrives). The usual
wait is the queue's recent average wait, rounded up to a round number of minutes, so the user
is promised a little more rather than less. Both or neither are given: half a picture ("4
people ahead", and nothing on how fast they move) reassures nobody.

The words themselves are the bot owner's (domain responses): the bridge passes numbers, as the
entities of `EXTERNAL_handoff_queued`. `queue_notice` writes the same facts in English for a
caller that needs one sentence (a reminder pushed as text).
"""

from __future__ import annotations

import math
from typing import Final

from bridge.eightbyeight.realtime import QueueFigures, RealtimeMetrics
from bridge.handoff import Handoff

ENTITY_QUEUE: Final = "queue"
ENTITY_AHEAD: Final = "queue_ahead"  # whole number, "0" = next in line
ENTITY_WAIT: Final = "queue_wait"  # whole minutes, the usual wait is under this

_ROUND_MINUTES: Final = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60)


def people_ahead(figures: QueueFigures) -> int | None:
    if figures.waiting is None:
        return None
    return max(0, figures.waiting - 1)


def wait_minutes(avg_wait_ms: float | None) -> int | None:
    """The average wait rounded up to 1, 2, 3, 5, 10, 15, 20, 30, 45, 60, then half hours."""
    if avg_wait_ms is None or avg_wait_ms < 0:
        return None
    minutes = max(1, math.ceil(avg_wait_ms / 60_000))
    for step in _ROUND_MINUTES:
        if minutes <= step:
            return step
    return 30 * math.ceil(minutes / 30)


def wait_figures(figures: QueueFigures | None) -> tuple[int, int] | None:
    """(people ahead, usual wait in minutes), or None unless both are known."""
    if figures is None:
        return None
    ahead, minutes = people_ahead(figures), wait_minutes(figures.avg_wait_ms)
    if ahead is None or minutes is None:
        return None
    return ahead, minutes


def queue_entities(queue_name: str | None, figures: QueueFigures | None) -> dict[str, str]:
    """The entities of an `EXTERNAL_handoff_queued` trigger; absent ones are unknown."""
    name = queue_name or (figures.name if figures else None)
    out = {ENTITY_QUEUE: name} if name else {}
    known = wait_figures(figures)
    if known is not None:
        out[ENTITY_AHEAD], out[ENTITY_WAIT] = str(known[0]), str(known[1])
    return out


def describe_queue(queue_name: str | None, figures: QueueFigures | None) -> str:
    """The same facts in one English sentence (or two)."""
    name = queue_name or (figures.name if figures else None)
    first = f"You're in the queue for {name}." if name else "You're in the queue."
    known = wait_figures(figures)
    if known is None:
        return f"{first} The next available agent will be with you."
    ahead, minutes = known
    unit = "minute" if minutes == 1 else "minutes"
    if ahead == 0:
        place = "You're next in line"
    elif ahead == 1:
        place = "There's about 1 person ahead of you"
    else:
        place = f"There are about {ahead} people ahead of you"
    return f"{first} {place}; the wait is usually under {minutes} {unit}."


async def queue_notice(handoff: Handoff, metrics: RealtimeMetrics | None) -> str:
    """The wait, in words, for a handoff still in a queue: its queue's name and, with the
    Real-time Metrics credentials configured, its figures. Never raises; without figures it
    says only what is known."""
    queue = handoff.queue or None
    figures = await metrics.queue(queue) if metrics is not None and queue else None
    name = figures.name if figures else None
    return describe_queue(name, figures)
