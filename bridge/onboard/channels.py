"""A channel in credentials.yml that can receive the agent's messages (they are pushed)."""

from __future__ import annotations

from ruamel.yaml.comments import CommentedMap

from bridge.onboard.errors import ProjectError
from bridge.onboard.plan import Plan
from bridge.onboard.yamlfile import YamlFile

# Rasa 3.6 input channels whose get_output_channel() can deliver a message pushed through the
# HTTP API (output_channel=latest). rest cannot: it answers each request and drops pushes.
PUSH_CHANNELS = {
    "socketio", "callback", "slack", "facebook", "twilio", "webexteams", "rocketchat",
}  # fmt: skip
DEFAULT_CALLBACK_URL = "http://localhost:5034/bot"


def _new_channel(channel: str, callback_url: str) -> CommentedMap:
    if channel == "socketio":
        return CommentedMap(
            user_message_evt="user_uttered", bot_message_evt="bot_uttered", session_persistence=True
        )
    return CommentedMap(url=callback_url)


def merge_credentials(plan: Plan, channel: str | None, callback_url: str) -> None:
    doc = YamlFile.load(plan.root / "credentials.yml", "credentials.yml")
    names = {str(k) for k in doc.data}
    if any(name in PUSH_CHANNELS or "." in name for name in names):
        return  # a push channel, or a custom connector (which may implement pushes)
    if channel is None:
        plan.problems.append(
            "credentials.yml: no channel can receive pushed messages ("
            + (", ".join(sorted(names)) or "none")
            + "): the agent's messages are pushed, and rest drops them, so a rest user never "
            "sees the agent. Add one: --channel socketio (web chat widgets) or --channel "
            "callback --callback-url URL (your own endpoint)"
        )
        return
    if channel not in ("socketio", "callback"):
        raise ProjectError(f"--channel {channel}: only socketio and callback can be added")
    doc.data[channel] = _new_channel(channel, callback_url)
    plan.change(doc.path, f"add the {channel} channel (it can receive the agent's messages)")
    plan.stage(doc)
