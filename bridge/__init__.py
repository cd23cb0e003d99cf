"""handoff-bridge: hand a Rasa conversation to a human agent in 8x8 Contact Center, and back."""

__version__ = "0.1.0"
