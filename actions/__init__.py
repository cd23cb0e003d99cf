"""The handoff's Rasa custom actions (rasa-sdk). Served by `handoff-bridge serve` in-process, or
by the stock server: `python -m rasa_sdk --actions actions` (needs REDIS_URL)."""

from bridge.host import require_loadable

# Refuse to load outside serve/sandbox without REDIS_URL (bridge-contract.md): a second
# process with its own embedded store would silently split the state in two.
require_loadable()
