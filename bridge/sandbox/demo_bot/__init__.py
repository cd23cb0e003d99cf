"""The sandbox's built-in demo bot: a small stand-in for the example Rasa bot.

Used only when no Rasa answers at `RASA_URL`. It serves the slice of Rasa's HTTP API the
bridge calls and Rasa's callback channel, keeps Rasa-shaped trackers, understands a few
keywords, routes like `handoff_policy.HandoffPolicy` and the example's rules, and runs the
real handoff actions on the bridge's action endpoint. It is not Rasa: tests that claim Rasa
compatibility must never use it.
"""

from bridge.sandbox.demo_bot.domain import BotDomain, load_domain
from bridge.sandbox.demo_bot.engine import DemoBot
from bridge.sandbox.demo_bot.server import DemoBotServer

__all__ = ["BotDomain", "DemoBot", "DemoBotServer", "load_domain"]
