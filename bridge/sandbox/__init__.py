"""`handoff-bridge sandbox`: the whole handoff on one machine, in a browser, with one command.

One process runs the real bridge (on the embedded store, verifying signatures), the 8x8
simulator as the contact center, a bot (the Rasa at `RASA_URL` when one answers, else the
built-in demo bot, a labelled stand-in), and a page with the customer's chat and the agent
desk. Modules, one job each:

- `runner`: binds the ports, starts and stops the parts in order (`running_sandbox`)
- `command`: the CLI's `run()` and its banner;  `bot_choice`: Rasa or the demo bot
- `web`: the page's HTTP API;  `static/`: the page itself (no build step, no CDN)
- `chat`: what reached the user's channel, per sender, labelled for the page
- `agent_typing`: the agent's typing indicator, from the events the simulator delivered
- `demo_bot/`: the stand-in for Rasa (never used by tests that claim Rasa compatibility)
"""

from bridge.sandbox.command import run
from bridge.sandbox.runner import Sandbox, SandboxConfig, running_sandbox

__all__ = ["Sandbox", "SandboxConfig", "run", "running_sandbox"]
