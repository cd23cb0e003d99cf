"""Route every user turn to the agent while a handoff is on (Rasa 3.x policy).

While the slot `handoff_active` is true, this policy predicts `action_handoff_forward` with
confidence 1.0 for each user turn, whatever NLU made of it, and `action_listen` after it.
With a priority above RulePolicy's (4) it wins every tie, so no rule, story or fallback of
the bot answers while an agent owns the conversation. It abstains for the bridge's own
intents (every `EXTERNAL_*` one) and for `restart` / `session_start`, so rules handle those.
It survives session expiry as long as the domain carries slots over to the new session
(`carry_over_slots_to_new_session: true`, Rasa's default).

It runs inside the Rasa server, not the action server: `rasa` imports it by module path from
config.yml, so this file must be importable there (the project root is on `sys.path` when
`rasa` is started from it; otherwise set PYTHONPATH). Retrain after adding it.

config.yml:

    policies:
      - name: handoff_policy.HandoffPolicy
        priority: 7                        # above RulePolicy (4)
        forward_action: action_handoff_forward
        slot: handoff_active
        passthrough_intents: [restart, session_start]
        passthrough_prefixes: [EXTERNAL_]
"""

from __future__ import annotations

from typing import Any

from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.exceptions import InvalidConfigException


# Rasa's default recipe gives every policy a train node, so the simple route is a trainable
# policy whose training is a no-op (Policy.load copes with the empty resource).
@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT], is_trainable=True
)
class HandoffPolicy(Policy):
    """Sends each user turn to `forward_action` while the `slot` is true."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "priority": 7,
            "forward_action": "action_handoff_forward",
            "slot": "handoff_active",
            "passthrough_intents": ["restart", "session_start"],
            "passthrough_prefixes": ["EXTERNAL_"],
        }

    def train(
        self, training_trackers: list[TrackerWithCachedStates], domain: Domain, **kwargs: Any
    ) -> Resource:
        """Learns nothing; checks that the configured action and slot are in the domain."""
        if self.config["forward_action"] not in domain.action_names_or_texts:
            raise InvalidConfigException(
                f"HandoffPolicy: forward_action '{self.config['forward_action']}' is not an "
                f"action in the domain."
            )
        if self.config["slot"] not in {slot.name for slot in domain.slots}:
            raise InvalidConfigException(
                f"HandoffPolicy: slot '{self.config['slot']}' is not a slot in the domain."
            )
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        """Forward after a user turn during a handoff, listen after forwarding, else abstain."""
        probabilities = self._default_predictions(domain)
        forward = self.config["forward_action"]
        if tracker.latest_action_name == forward:
            # Always listen after forwarding, also when the forward action has just ended
            # the handoff (otherwise no rule matches and Rasa's core fallback would reply).
            probabilities[domain.index_for_action(ACTION_LISTEN_NAME)] = 1.0
        elif (
            tracker.latest_action_name == ACTION_LISTEN_NAME
            and tracker.get_slot(self.config["slot"]) is True
            and not self._is_passthrough(tracker)
        ):
            probabilities[domain.index_for_action(forward)] = 1.0
        return self._prediction(probabilities)

    def _is_passthrough(self, tracker: DialogueStateTracker) -> bool:
        message = tracker.latest_message
        intent = (message.intent.get("name") if message else None) or ""
        return intent in self.config["passthrough_intents"] or intent.startswith(
            tuple(self.config["passthrough_prefixes"])
        )
