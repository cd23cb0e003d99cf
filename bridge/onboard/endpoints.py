"""Rasa's action endpoint at the bridge (with the action token); the bot's own action server,
if it had one, becomes the bridge's upstream."""

from __future__ import annotations

from urllib.parse import urlsplit

from ruamel.yaml.comments import CommentedMap

from bridge.onboard.errors import ProjectError
from bridge.onboard.plan import Plan
from bridge.onboard.yamlfile import YamlFile

# Rasa expands ${VAR} in endpoints.yml only in a plain (unquoted) scalar, and sends the value
# as `?token=` on every action call.
TOKEN = "${BRIDGE_ACTION_TOKEN}"
SDK_DEFAULT_PORT = 5055  # rasa-sdk's default, and the bridge's (BRIDGE_PORT)
_LOCAL = {"localhost", "127.0.0.1", "0.0.0.0", "::1"}


def _same_server(a: str, b: str) -> bool:
    x, y = urlsplit(a), urlsplit(b)
    hosts = {x.hostname, y.hostname}
    same_host = x.hostname == y.hostname or hosts <= _LOCAL
    return same_host and (x.port or 80) == (y.port or 80)


def merge_endpoints(plan: Plan, bridge_url: str, own_actions: list[str]) -> None:
    doc = YamlFile.load(plan.root / "endpoints.yml", "endpoints.yml")
    endpoint = doc.data.get("action_endpoint")
    if endpoint is not None and not isinstance(endpoint, dict):
        raise ProjectError("endpoints.yml: `action_endpoint` is not a mapping")
    old = str((endpoint or {}).get("url") or "")
    if endpoint is None:
        doc.data["action_endpoint"] = CommentedMap(url=bridge_url, token=TOKEN)
        plan.change(doc.path, f"set action_endpoint to {bridge_url} (the bridge), token {TOKEN}")
    elif old != bridge_url or endpoint.get("token") != TOKEN:
        endpoint["url"], endpoint["token"] = bridge_url, TOKEN
        plan.change(doc.path, f"set action_endpoint to {bridge_url} (the bridge), token {TOKEN}")
    _upstream(plan, old, bridge_url, own_actions)
    plan.stage(doc)


def _upstream(plan: Plan, old: str, bridge_url: str, own_actions: list[str]) -> None:
    """Tell where the bot's own actions go now: the bridge forwards them upstream."""
    if old and old != bridge_url and not _same_server(old, bridge_url):
        plan.notes.append(
            f"your actions were served at {old}: keep that server running and start the bridge "
            f"with BRIDGE_ACTION_UPSTREAM={old} (it forwards every action it does not own there)"
        )
    elif old and own_actions:
        # Both at 5055 (rasa-sdk's default and the bridge's): the bot's server must move.
        moved = urlsplit(old)._replace(netloc=f"{urlsplit(old).hostname}:{SDK_DEFAULT_PORT + 1}")
        plan.notes.append(
            f"your own actions ({', '.join(own_actions)}) were served at {old}, the port the "
            f"bridge takes (5055 is rasa-sdk's default too): start your action server with "
            f"`-p {SDK_DEFAULT_PORT + 1}` and the bridge with "
            f"BRIDGE_ACTION_UPSTREAM={moved.geturl()}"
        )
