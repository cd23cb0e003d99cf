"""The relay: delivers accepted 8x8 events into Rasa, in order per conversation."""

from bridge.relay.config import RelayConfig
from bridge.relay.deliver import Deliverer
from bridge.relay.worker import Relay

__all__ = ["Deliverer", "Relay", "RelayConfig"]
