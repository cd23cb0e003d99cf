"""The demo bot's NLU: a handful of keywords, and Rasa's `/intent` commands.

It stands in for the example bot's trained model only as far as the sandbox needs: enough
to greet, tell the opening hours, ask for a person and end the agent chat. Anything else is
`nlu_fallback`, as the example's FallbackClassifier would say for text it is unsure of.
"""

from __future__ import annotations

import json
import re
from typing import Any

FALLBACK = "nlu_fallback"
# A keyword hit counts as a sure guess, as small bots' classifiers are sure of themselves. During
# a live agent chat "end chat" still goes to the agent unless HANDOFF_END_THRESHOLD is set: only
# the explicit /end_handoff (the page's "End chat" button) ends it by default.
KEYWORD_CONFIDENCE = 0.95
FALLBACK_CONFIDENCE = 0.3  # below the example's FallbackClassifier threshold (0.4)

# First match wins: ending the chat before asking for one ("end the chat with the agent"
# names an agent), and both before small talk.
_KEYWORDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (intent, re.compile(pattern, re.IGNORECASE))
    for intent, pattern in (
        ("end_handoff", r"\b(end|close|stop|leave|quit)\b.{0,12}\bchat\b"),
        ("human_handoff", r"\b(human|agent|person|someone|representative|operator|people)\b"),
        ("ask_hours", r"\b(hours?|open|opening|close|closing)\b"),
        ("thank", r"\b(thanks?|thank you|thx|cheers)\b"),
        ("goodbye", r"\b(bye|goodbye|see you|cya)\b"),
        ("greet", r"\b(hi|hello|hey|hiya|howdy|good (morning|afternoon|evening))\b"),
    )
)
# Rasa's RegexMessageHandler: "/intent" or "/intent{...json entities...}", confidence 1.0.
_COMMAND = re.compile(r"^/([A-Za-z_][\w-]*)(\{.*\})?$", re.DOTALL)


def parse(text: str, intents: frozenset[str]) -> dict[str, Any]:
    """Rasa-shaped parse data for `text`: intent, entities, intent_ranking, text."""
    intent, confidence, entities = _classify(text.strip(), intents)
    return {
        "text": text,
        "intent": {"name": intent, "confidence": confidence},
        "entities": entities,
        "intent_ranking": [{"name": intent, "confidence": confidence}],
    }


def _classify(text: str, intents: frozenset[str]) -> tuple[str, float, list[dict[str, Any]]]:
    command = _COMMAND.match(text)
    if command and command[1] in intents:
        return command[1], 1.0, _command_entities(command[2])
    for intent, pattern in _KEYWORDS:
        if intent in intents and pattern.search(text):
            return intent, KEYWORD_CONFIDENCE, []
    return FALLBACK, FALLBACK_CONFIDENCE, []


def _command_entities(raw: str | None) -> list[dict[str, Any]]:
    if not raw:
        return []
    try:
        values = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(values, dict):
        return []
    return [{"entity": str(k), "value": v} for k, v in values.items()]
