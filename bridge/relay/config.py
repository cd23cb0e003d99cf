"""The relay's knobs, with the reasons for their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.handoff import DEFAULT_TIMING, Timing


@dataclass(frozen=True)
class RelayConfig:
    max_attempts: int = 20  # RELAY_MAX_ATTEMPTS: then the event goes to the dead letters
    max_age_s: float = 3600.0  # RELAY_MAX_AGE_S: likewise, counted from acceptance
    hold_s: float = 120.0  # EVENT_HOLD_S: how long an unmapped conversation's events wait
    # A lease lapses this long after its holder stops renewing (crash, partition); renewal
    # runs every third of it, so one slow Redis round trip does not lose it.
    lease_ttl_ms: int = 10_000
    # How often an idle partition looks for events enqueued by *another* process (events from
    # this process's own webhook wake it at once).
    poll_s: float = 0.2
    batch: int = 64  # stream entries read per round trip
    backoff_base_s: float = 0.25  # first retry delay while Rasa is down; doubles per attempt
    backoff_cap_s: float = 30.0
    timing: Timing = DEFAULT_TIMING  # the state machine's windows and the handoff's timers
    # How often a partition's holder looks for due timers (a timer fires up to this late).
    timer_poll_s: float = 0.5

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_cap_s, self.backoff_base_s * 2 ** max(0, attempt - 1)))
