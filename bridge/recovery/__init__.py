"""Recovery of agent messages and state changes 8x8 gave up on (docs/design.md, "Recovery")."""

from bridge.recovery.loop import RecoveryLoop
from bridge.recovery.sweep import RecoveryConfig, Sweeper, SweepResult

__all__ = ["RecoveryConfig", "RecoveryLoop", "SweepResult", "Sweeper"]
