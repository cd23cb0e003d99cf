"""Small Rasa 3.x projects in the layouts add-to-bot meets (the real `rasa init` template is
used by the end-to-end test, from the installed Rasa)."""

from __future__ import annotations

from pathlib import Path

# Shaped like `rasa init`: auto-configured policies (all commented out), indentation that mixes
# both list styles, an endpoints.yml of comments only, rest as the only chat channel.
AUTO_CONFIG = {
    "config.yml": """\
# The config recipe.
recipe: default.v1
assistant_id: placeholder_default
language: en

pipeline:
# # No configuration for the NLU pipeline was provided.
#   - name: WhitespaceTokenizer

# Configuration for Rasa Core.
policies:
# # No configuration for policies was provided. The following default policies were used.
#   - name: MemoizationPolicy
#   - name: RulePolicy
""",
    "domain.yml": """\
version: "3.1"

intents:
  - greet   # hello there
  - goodbye

responses:
  utter_greet:
  - text: "Hey! How are you?"

  utter_goodbye:
  - text: "Bye"

session_config:
  session_expiration_time: 60
  carry_over_slots_to_new_session: true
""",
    "data/nlu.yml": """\
version: "3.1"

nlu:
- intent: greet
  examples: |
    - hey
    - hello
- intent: goodbye
  examples: |
    - bye
""",
    "data/rules.yml": """\
version: "3.1"

rules:

- rule: Say goodbye anytime the user says goodbye
  steps:
  - intent: goodbye
  - action: utter_goodbye
""",
    "endpoints.yml": """\
# This file contains the different endpoints your bot can use.

#action_endpoint:
#  url: "http://localhost:5055/webhook"
""",
    "credentials.yml": """\
# the voice & chat platforms
rest:
#  # you don't need to provide anything here

rasa:
  url: "http://localhost:5002/api"
""",
}

EXPLICIT_POLICIES = {
    **AUTO_CONFIG,
    "config.yml": """\
recipe: default.v1
language: en
pipeline:
  - name: WhitespaceTokenizer
  - name: CountVectorsFeaturizer
  - name: DIETClassifier
    epochs: 50        # small data
policies:
  - name: MemoizationPolicy
  - name: TEDPolicy
    max_history: 3
""",
}

# The same, with list items flush with their key (the other usual style).
FLUSH_POLICIES = {
    **AUTO_CONFIG,
    "config.yml": """\
recipe: default.v1
language: en
policies:
- name: MemoizationPolicy   # remembers the stories
- name: TEDPolicy
  max_history: 3
""",
}

DOMAIN_FOLDER = {
    **{k: v for k, v in AUTO_CONFIG.items() if k != "domain.yml"},
    "domain/core.yml": """\
version: "3.1"
intents:
  - greet
  - goodbye
session_config:
  carry_over_slots_to_new_session: true
""",
    "domain/responses.yml": """\
version: "3.1"
responses:
  utter_greet:
    - text: "Hey!"
  utter_goodbye:
    - text: "Bye"
  utter_default:
    - text: "Our own default."
""",
}

# A bot with its own action server on rasa-sdk's default port (which the bridge takes too).
OWN_ACTIONS_5055 = {
    **AUTO_CONFIG,
    "domain.yml": AUTO_CONFIG["domain.yml"] + "actions:\n  - action_order_status\n",
    "endpoints.yml": 'action_endpoint:\n  url: "http://localhost:5055/webhook"\n',
}
OWN_ACTIONS_ELSEWHERE = {
    **OWN_ACTIONS_5055,
    "endpoints.yml": 'action_endpoint:\n  url: "http://actions.internal:5055/webhook"\n',
}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
