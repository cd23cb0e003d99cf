"""The lifecycle as plain data: transitions that must be refused, and the customer shapes."""

from __future__ import annotations

import pytest

from bridge.simulator import state
from bridge.simulator.customer import shown_as, to_gateway_user, to_v2_customer
from bridge.simulator.state import Agent, InvalidTransition, SimConversation

ANNA = Agent("a1", "Anna")


def new() -> SimConversation:
    conv, _ = state.new_conversation(
        api="gateway",
        channel_id="ch1",
        customer={},
        history=[("bot", "hi")],
        queue_id="101",
        tenant_id="t1",
        now_ms=1,
    )
    return conv


@pytest.mark.parametrize("action", ["say", "typing", "leave", "transfer"])
def test_agent_actions_need_an_agent(action: str) -> None:
    conv = new()
    with pytest.raises(InvalidTransition):
        if action == "say":
            state.agent_say(conv, "x", now_ms=2)
        elif action == "typing":
            state.agent_typing(conv, True, now_ms=2)
        elif action == "leave":
            state.agent_leave(conv, now_ms=2)
        else:
            state.transfer(conv, "202", now_ms=2)


def test_accept_needs_a_waiting_interaction_and_no_agent() -> None:
    conv = new()
    state.accept(conv, ANNA, now_ms=2)
    with pytest.raises(InvalidTransition, match="already"):
        state.accept(conv, Agent("b", "Bob"), now_ms=3)
    state.agent_leave(conv, now_ms=4)
    with pytest.raises(InvalidTransition, match="idle"):
        state.accept(conv, ANNA, now_ms=5)


def test_customer_leave_on_an_idle_conversation_changes_nothing() -> None:
    conv = new()
    assert [type(h).__name__ for h in state.customer_leave(conv, now_ms=2)] == [
        "UserLeft",
        "StateChanged",
    ]
    assert conv.user_present is False
    assert state.customer_leave(conv, now_ms=3) == []
    _, happened = state.post_message(conv, "user", "back", tenant_id="t1", now_ms=4)
    assert [type(h).__name__ for h in happened] == ["StateChanged", "Queued", "MessageAdded"]
    assert conv.user_present is True and conv.state == "active"


def test_history_belongs_to_the_first_interaction() -> None:
    conv = new()
    assert conv.history[0].interaction_id == conv.interactions[0].id
    assert conv.messages == []


def test_customer_shapes_convert_both_ways() -> None:
    user = {
        "name": "Jo",
        "userId": "u1",
        "language": "en",
        "additionalProperties": [{"key": "plan", "value": "gold"}],
    }
    customer = {"name": "Jo", "customerId": "u1", "language": "en", "plan": "gold"}
    assert to_v2_customer(user) == customer
    assert to_gateway_user(customer) == user
    assert shown_as("gateway", user, "gateway") == user
    assert shown_as("chat-v2", user, "gateway") == customer
