"""The handoff funnel, seen from each stored state change: metrics, and one log line per change.

Called wherever a handoff record is written after a step of the state machine (the service
for the actions, the relay for 8x8 events), with the state before and the step taken, so both
paths count alike.
"""

from __future__ import annotations

import logging

from bridge.handoff import Handoff, State, Step
from bridge.ids import SenderId
from bridge.metrics import Metrics

log = logging.getLogger(__name__)

_WAITING = frozenset({State.REQUESTED, State.QUEUED})

# Why a live handoff went back to the bot, by the step's outcome.
_RETURN_REASONS = {
    "agent_left": "agent_left",
    "ended": "user_ended",
    "user_left": "user_ended",
    "failed": "escalation_failed",
}


def observe(metrics: Metrics, sender: SenderId, before: Handoff, step: Step, now_ms: int) -> None:
    after = step.handoff
    if after.state is before.state:
        return
    log.info(
        "handoff_state",
        extra={"sender": sender, "conversation": after.conversation_id or before.conversation_id,
               "from": before.state.value, "to": after.state.value, "outcome": step.outcome,
               "agent": after.agent_id},
    )  # fmt: skip
    if after.state is State.WITH_AGENT and before.state in _WAITING and before.since_ms:
        metrics.time_to_agent.observe(max(0.0, (now_ms - before.since_ms) / 1000))
    if after.state is State.TRANSFERRING:
        metrics.transfers.inc()
    if before.state in _WAITING and after.state is State.ENDED and step.outcome != "agent_left":
        metrics.abandoned_waits.inc()
    if not after.active and (before.active or after.state is State.FAILED):
        metrics.returns_to_bot.labels(_RETURN_REASONS.get(step.outcome, step.outcome)).inc()
