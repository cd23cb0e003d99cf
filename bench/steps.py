"""CPU per event of the relay's own Python work on an agent message, without I/O.

    python -m bench.steps [--events N] [--repeat R] [--warm W]

Runs, N times, what `Deliverer.process`/`_apply` do for one Gateway agent message on a live
handoff (timers on, the agent writing every few seconds, so every step writes the record):
decode the stream entry, its identity, the lag histogram, read the record, the state machine,
the pushes (named as the user sees them), the deliveries counter, the record written back,
the funnel, the outcome counter, the timers armed. The store, Rasa and the log line are left
out (their own costs). Reports CPU µs per event (`time.process_time`), the best of R rounds:
CPU time, unlike wall time, holds on a shared machine. For instruction counts, run it under
`valgrind --tool=callgrind` with `--repeat 1` at two sizes and divide the difference.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from bridge import funnel
from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.handoff import Handoff, State, TimerKind, Timing, on_event
from bridge.ids import ConversationId, EventId, SenderId
from bridge.metrics import Metrics
from bridge.notices import Notices
from bridge.relay.config import RelayConfig
from bridge.relay.deliver import Deliverer
from bridge.relay.identity import identity_of
from bridge.relay.pushes import pushes_for, timer_changes
from bridge.store.base import StreamEntry

T = TypeVar("T")

# The service's default timers (settings HANDOFF_*_S).
TIMING = Timing(
    queue_timeout_ms=600_000, queue_reminder_ms=120_000,
    agent_silence_ms=300_000, user_silence_ms=900_000,
)  # fmt: skip
START_MS = 1_780_000_000_000
EVERY_MS = 3_000  # the agent's pace: past the record's one-second grain, so each step writes


def _record() -> dict[str, str]:
    h = Handoff(
        state=State.WITH_AGENT,
        conversation_id=ConversationId("c0a8012e-7d1f-4b8e-9f51-3a2b4c5d6e7f"),
        agent_name="Alice Martin",
        agent_id="agent-7f3c2a",
        since_ms=START_MS - 120_000,
        changed_ms=START_MS - 5_000,
        queue="queue-42",
        agent_ms=START_MS - 5_000,
        user_ms=START_MS - 8_000,
        timers=(
            (TimerKind.AGENT_SILENCE, START_MS + 292_000),
            (TimerKind.USER_SILENCE, START_MS + 895_000),
        ),
    )
    return h.to_fields()


def _payload() -> str:
    return ChatEvent(
        kind=EventKind.AGENT_MESSAGE,
        raw_type="MESSAGE",
        conversation_id=ConversationId("c0a8012e-7d1f-4b8e-9f51-3a2b4c5d6e7f"),
        timestamp_ms=START_MS,
        agent_id="agent-7f3c2a",
        agent_name="Alice Martin",
        text="Thanks for waiting. Could you tell me the order number, please?",
    ).to_json()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """A coroutine that never suspends (no metrics credentials: nothing to await), run inline."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise RuntimeError("the coroutine suspended")


def one_round(events: int) -> float:
    """CPU seconds for `events` agent messages."""
    metrics, notices = Metrics(), Notices()
    deliverer = Deliverer(None, None, metrics, RelayConfig(timing=TIMING))  # type: ignore[arg-type]
    sender, event_id = SenderId("sender-1"), EventId("evt-5b9d0c1e2f")
    fields, payload = _record(), _payload()
    entry = StreamEntry(f"{START_MS}-0", event_id, payload)
    started = time.process_time()
    for i in range(events):
        now_ms = START_MS + i * EVERY_MS
        metrics.relay_lag.observe(max(0.0, now_ms / 1000 - (now_ms - 4) / 1000))
        event = ChatEvent.from_json(entry.payload)
        identity_of(event_id, event)
        handoff = Handoff.from_fields(fields)
        event = _run(notices.complete(event))
        step = on_event(handoff, event, now_ms, TIMING)
        pushes = _run(notices.dress(pushes_for(step, event_id), event))
        metrics.relay_deliveries.labels("message").inc(len(pushes))
        if step.handoff != handoff:
            step.handoff.to_fields()
            funnel.observe(metrics, sender, handoff, step, now_ms)
        deliverer._processed(sender, entry, event, step)
        timer_changes([step])
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warm", type=int, default=2_000, help="events first, not counted")
    args = parser.parse_args()
    logging.disable(logging.INFO)  # the INFO lines: the log helper's cost, not this one's
    one_round(args.warm)  # imports, caches, the first registry children
    rounds = [one_round(args.events) for _ in range(args.repeat)]
    per_event = [1e6 * r / max(1, args.events) for r in rounds]
    print(
        f"{args.events} events x {args.repeat}: CPU us/event best {min(per_event):.2f}, "
        f"all {' '.join(f'{p:.2f}' for p in per_event)}"
    )


if __name__ == "__main__":
    main()
