"""Every handoff action, with rasa-sdk's Tracker and CollectingDispatcher, 8x8 simulated."""

from __future__ import annotations

import asyncio
import dataclasses
from contextlib import AbstractContextManager
from typing import Any

import pytest
from rasa_sdk import Action, Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.handoff import (
    ActionHandoffEnd,
    ActionHandoffForward,
    ActionHandoffNotice,
    ActionHandoffToAgent,
)
from bridge import host
from bridge.eightbyeight.client import HistoryMessage
from bridge.handoff import State
from bridge.ids import ConversationId, SenderId
from bridge.outbox import OutboxDrainer
from bridge.service import outbox_text_item
from tests.actions.conftest import World, tracker, turn

ESCALATE = ActionHandoffToAgent()
FORWARD = ActionHandoffForward()
END = ActionHandoffEnd()
NOTICE = ActionHandoffNotice()


async def run(action: Action, t: Tracker) -> tuple[list[str | None], list[dict[str, Any]]]:
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, t, {})
    return [m.get("response") for m in dispatcher.messages], list(events)


def configured(w: World, update: dict[str, Any]) -> AbstractContextManager[None]:
    """The actions run inside the block see these settings."""
    return host.serving(host.ActionContext(w.settings.model_copy(update=update), w.service))


def slot(events: list[dict[str, Any]]) -> bool | None:
    values = [
        e["value"] for e in events if e.get("event") == "slot" and e.get("name") == "handoff_active"
    ]
    return values[-1] if values else None


async def escalate(w: World, sender: str = "ada", **kw: Any) -> str:
    said, events = await run(ESCALATE, tracker(sender, "I want a human", "human_handoff", **kw))
    assert said == ["utter_handoff_connecting"] and slot(events) is True
    handoff = await w.service.handoff(SenderId(sender))
    assert handoff.conversation_id is not None
    return handoff.conversation_id


def active(t: Tracker) -> Tracker:
    t.slots["handoff_active"] = True
    return t


async def test_escalation_opens_a_conversation_with_transcript_and_customer_data(w: World) -> None:
    history = turn("hi", "greet", "utter_greet", bot="Hello! How can I help?") + turn(
        "my order is late",
        "nlu_fallback",
        "action_handoff_to_agent",
        bot="Sorry, I can't help with that.",
    )
    cid = await escalate(w, slots={"name": "Ada Lovelace", "email": "ada@example.com"}, history=history,
                         metadata={"phone": "+441234"})  # fmt: skip
    conv = w.sim.conversations[cid]
    texts = [(m.author_type, m.text) for m in conv.history]
    assert texts == [
        ("user", "hi"), ("bot", "Hello! How can I help?"), ("user", "my order is late"),
        ("bot", "Sorry, I can't help with that."), ("user", "I want a human"),
    ]  # fmt: skip
    flat = str(conv.customer)
    assert "Ada Lovelace" in flat and "ada@example.com" in flat and "+441234" in flat
    assert (await w.service.handoff(SenderId("ada"))).state is State.REQUESTED


async def test_concurrent_escalations_of_one_sender_create_one_conversation(w: World) -> None:
    results = await asyncio.gather(
        *(run(ESCALATE, tracker("bob", "agent please", "human_handoff")) for _ in range(6))
    )
    assert all(slot(events) is True for _, events in results)
    creates = [r for r in w.sim.requests if r[0] == "POST" and r[1].endswith("/conversations")]
    assert len(creates) == 1 and len(w.sim.conversations) == 1


async def test_the_first_fallback_apologises_the_second_in_a_row_escalates(w: World) -> None:
    said, events = await run(ESCALATE, tracker("cy", "asdf", "nlu_fallback"))
    assert said == ["utter_default"] and slot(events) is None and not w.sim.conversations
    history = turn("asdf", "nlu_fallback", "action_handoff_to_agent", bot="Sorry")
    said, events = await run(ESCALATE, tracker("cy", "qwerty", "nlu_fallback", history=history))
    assert (
        said == ["utter_handoff_connecting"]
        and slot(events) is True
        and len(w.sim.conversations) == 1
    )


async def test_a_fallback_streak_is_broken_by_an_answered_turn(w: World) -> None:
    history = turn("asdf", "nlu_fallback", "action_handoff_to_agent") + turn(
        "hours?", "ask_hours", "utter_hours"
    )
    said, _ = await run(ESCALATE, tracker("dee", "zzz", "nlu_fallback", history=history))
    assert said == ["utter_default"] and not w.sim.conversations


async def test_handoff_fallbacks_zero_never_escalates_on_fallbacks(
    w: World,
) -> None:
    with configured(w, {"handoff_fallbacks": 0}):
        history = turn("a", "nlu_fallback", "action_handoff_to_agent") * 3
        said, _ = await run(ESCALATE, tracker("eve", "b", "nlu_fallback", history=history))
        assert said == ["utter_default"] and not w.sim.conversations


def vip_rule(t: Tracker) -> bool:
    return t.get_slot("tier") == "vip"


async def test_the_bot_owners_rule_escalates_at_the_first_fallback(
    w: World,
) -> None:
    rule = f"{__name__}.vip_rule"
    with configured(w, {"handoff_rule": rule}):
        said, _ = await run(
            ESCALATE, tracker("fay", "hmm", "nlu_fallback", slots={"tier": "basic"})
        )
        assert said == ["utter_default"]
        said, _ = await run(ESCALATE, tracker("gus", "hmm", "nlu_fallback", slots={"tier": "vip"}))
        assert said == ["utter_handoff_connecting"]


async def test_a_failed_create_tells_the_user_and_keeps_the_bot(w: World) -> None:
    w.sim.faults.fail_next("create_conversation", count=1, status=500)
    said, events = await run(ESCALATE, tracker("hal", "agent", "human_handoff"))
    assert said == ["utter_handoff_failed"] and slot(events) is False
    assert (await w.service.handoff(SenderId("hal"))).state is State.FAILED


async def test_forward_sends_the_users_text_and_the_bot_says_nothing(w: World) -> None:
    cid = await escalate(w, "ivy")
    said, events = await run(FORWARD, active(tracker("ivy", "what is my balance", "ask_hours")))
    assert said == [] and events == []
    assert [(m.author_type, m.text) for m in w.sim.conversations[cid].messages][-1] == (
        "user",
        "what is my balance",
    )


@pytest.mark.parametrize(
    ("threshold", "text", "intent", "confidence", "ends"),
    [
        # HANDOFF_END_THRESHOLD unset (the default): only the explicit command ends the chat.
        (None, "/end_handoff", "end_handoff", 1.0, True),
        (None, '/end_handoff{"reason": "done"}', "end_handoff", 1.0, True),
        (None, "close my account", "end_handoff", 0.997, False),
        (None, "stop", "end_handoff", 1.0, False),
        (None, "bye", "goodbye", 0.99, False),
        # With a threshold, NLU sure enough of end_handoff ends it too.
        (0.9, "/end_handoff", "end_handoff", 1.0, True),
        (0.9, "end chat", "end_handoff", 0.95, True),
        (0.9, "end chat", "end_handoff", 0.9, True),
        (0.9, "I'd like to end up with a refund", "end_handoff", 0.6, False),
        (0.9, "bye", "goodbye", 0.99, False),
    ],
)
async def test_end_handoff_during_a_handoff_needs_a_command_or_a_configured_confidence(
    w: World, threshold: float | None, text: str, intent: str, confidence: float, ends: bool
) -> None:
    with configured(w, {"handoff_end_threshold": threshold}):
        cid = await escalate(w, "jo")
        said, events = await run(
            FORWARD, active(tracker("jo", text, intent, confidence=confidence))
        )
        messages = [(m.author_type, m.text) for m in w.sim.conversations[cid].messages]
        if ends:
            assert said == ["utter_handoff_ended"] and slot(events) is False
            assert ("user", text) not in messages  # never forwarded as text
            assert (await w.service.handoff(SenderId("jo"))).state is State.ENDED
        else:
            assert said == [] and ("user", text) in messages


async def test_end_action_leaves_the_interaction_and_returns_to_the_bot(w: World) -> None:
    cid = await escalate(w, "kim")
    await w.sim.desk.accept(cid, agent_name="Anna")
    said, events = await run(END, active(tracker("kim", "/end_handoff", "end_handoff")))
    assert said == ["utter_handoff_ended"] and slot(events) is False
    assert w.sim.conversations[cid].state == "idle" or w.sim.conversations[cid].agent is None
    leaves = [r for r in w.sim.requests if "participants" in r[1] and r[0] in ("PATCH", "DELETE")]
    assert len(leaves) == 1


async def test_escalating_again_reopens_the_same_conversation(w: World) -> None:
    cid = await escalate(w, "lee")
    await run(END, active(tracker("lee", "/end_handoff", "end_handoff")))
    said, events = await run(ESCALATE, tracker("lee", "agent again please", "human_handoff"))
    assert said == ["utter_handoff_connecting"] and slot(events) is True
    assert len(w.sim.conversations) == 1
    conv = w.sim.conversations[cid]
    assert len(conv.interactions) == 2
    assert conv.messages[-1].text == "agent again please"


async def test_8x8_down_delays_messages_in_order_and_serve_drains_them(w: World) -> None:
    cid = await escalate(w, "max")
    w.sim.faults.fail_next("send_message", count=1000, status=503)
    said, _ = await run(FORWARD, active(tracker("max", "first", "greet")))
    assert said == ["utter_handoff_delayed"]
    said, _ = await run(FORWARD, active(tracker("max", "second", "greet")))
    assert said == []  # queued behind the first, silently
    w.sim.faults.clear()
    drainer = OutboxDrainer(w.service)
    assert await drainer.drain_once()
    texts = [m.text for m in w.sim.conversations[cid].messages if m.author_type == "user"]
    assert texts[-2:] == ["first", "second"]
    assert await w.store.outbox_peek(SenderId("max")) is None


@pytest.mark.parametrize(
    ("intent", "response", "value"),
    [
        ("EXTERNAL_handoff_queued", "utter_handoff_queued", True),
        ("EXTERNAL_agent_joined", "utter_handoff_agent_joined", True),
        ("EXTERNAL_agent_left", "utter_handoff_agent_left", False),
        ("EXTERNAL_handoff_failed", "utter_handoff_failed", False),
    ],
)
async def test_notice_says_the_response_and_sets_the_slot(
    w: World, intent: str, response: str, value: bool
) -> None:
    said, events = await run(NOTICE, tracker("ned", f"EXTERNAL: {intent}", intent))
    assert said == [response] and slot(events) is value


def test_dataclass_world_is_plain() -> None:
    assert dataclasses.is_dataclass(World)


async def test_a_new_escalation_drops_what_waited_from_the_ended_handoff(w: World) -> None:
    cid = await escalate(w, "oli")
    w.sim.faults.fail_next("send_message", count=1000, status=503)
    w.sim.faults.fail_next("leave", count=1000, status=503)
    said, _ = await run(FORWARD, active(tracker("oli", "still there?", "greet")))
    assert said == ["utter_handoff_delayed"]
    said, events = await run(END, active(tracker("oli", "/end_handoff", "end_handoff")))
    assert said == ["utter_handoff_ended"] and slot(events) is False
    w.sim.faults.clear()
    said, events = await run(ESCALATE, tracker("oli", "agent again please", "human_handoff"))
    assert said == ["utter_handoff_connecting"] and slot(events) is True
    assert await OutboxDrainer(w.service).drain_once()
    conv = w.sim.conversations[cid]
    assert [m.text for m in conv.messages if m.author_type == "user"][-1] == "agent again please"
    assert "still there?" not in [m.text for m in conv.messages]
    assert (
        await w.service.handoff(SenderId("oli"))
    ).state is State.REQUESTED  # not ended by a stale leave


@pytest.mark.parametrize(
    ("status", "said", "active_after"),
    [
        (403, "utter_handoff_delayed", True),
        (400, "utter_handoff_failed", True),
        (404, "utter_handoff_ended", False),
    ],
)
async def test_8x8_refusing_a_message_ends_the_handoff_only_when_the_conversation_is_gone(
    w: World, status: int, said: str, active_after: bool
) -> None:
    await escalate(w, "pia")
    w.sim.faults.fail_next("send_message", count=1, status=status)
    messages, events = await run(FORWARD, active(tracker("pia", "hello?", "greet")))
    assert messages == [said]
    assert (slot(events) is not False) is active_after
    assert (await w.service.handoff(SenderId("pia"))).active is active_after
    queued = await w.store.outbox_peek(SenderId("pia"))
    assert (queued is not None) is (status == 403)  # refused credentials: kept for later


async def test_two_drainers_never_send_an_item_twice(w: World) -> None:
    cid = await escalate(w, "quin")
    w.sim.faults.fail_next("send_message", count=1000, status=503)
    for k in range(6):
        await run(FORWARD, active(tracker("quin", f"q{k}", "greet")))
    w.sim.faults.clear()
    drainer = OutboxDrainer(w.service)
    for _ in range(20):
        await asyncio.gather(drainer.drain_once(), drainer.drain_once())
        if await w.store.outbox_peek(SenderId("quin")) is None:
            break
    texts = [m.text for m in w.sim.conversations[cid].messages if m.author_type == "user"]
    assert texts[-6:] == [f"q{k}" for k in range(6)] and len(set(texts)) == len(texts)


async def test_a_mistyped_handoff_rule_does_not_break_the_fallback(
    w: World,
) -> None:
    with configured(w, {"handoff_rule": "no.such.module.rule"}):
        said, _ = await run(ESCALATE, tracker("ray", "hmm", "nlu_fallback"))
        assert said == ["utter_default"]


def slot_event(value: bool) -> dict[str, Any]:
    return {"event": "slot", "name": "handoff_active", "value": value}


async def test_reopen_sends_the_turns_since_the_last_handoff_first_never_the_command(
    w: World,
) -> None:
    first = turn("my order is late", "nlu_fallback", "action_handoff_to_agent", bot="Sorry!")
    cid = await escalate(w, "ria", history=first)
    await run(END, active(tracker("ria", "/end_handoff", "end_handoff")))
    conv = w.sim.conversations[cid]
    before = len(conv.messages)
    history = [
        *first,
        slot_event(True),
        *turn("to the agent", "inform", "action_handoff_forward"),  # 8x8 has it already
        {"event": "bot", "text": "Hi, Anna here.", "metadata": {"handoff": {"agent": "Anna"}}},
        slot_event(False),
        *turn("what are your hours", "ask_hours", "utter_hours", bot="Mon-Fri 9-5."),
        *turn("still late", "nlu_fallback", "action_handoff_to_agent", bot="Sorry, I can't help."),
    ]
    t = tracker("ria", "/human_handoff", "human_handoff", history=history)
    said, events = await run(ESCALATE, t)
    assert said == ["utter_handoff_connecting"] and slot(events) is True
    sent = [(m.author_type, m.text) for m in conv.messages[before:]]
    assert sent == [
        ("user", "what are your hours"), ("bot", "Mon-Fri 9-5."),
        ("user", "still late"), ("bot", "Sorry, I can't help."),
    ]  # fmt: skip
    assert len(conv.interactions) == 2
    assert all(m.interaction_id == conv.interactions[1].id for m in conv.messages[before:])
    assert "/human_handoff" not in [m.text for m in conv.messages + conv.history]


async def test_reopen_by_command_alone_posts_the_neutral_line_as_the_user(w: World) -> None:
    cid = await escalate(w, "sam")
    await run(END, active(tracker("sam", "/end_handoff", "end_handoff")))
    history = [slot_event(True), slot_event(False)]
    await run(ESCALATE, tracker("sam", "/human_handoff", "human_handoff", history=history))
    conv = w.sim.conversations[cid]
    assert (conv.messages[-1].author_type, conv.messages[-1].text) == (
        "user",
        "The customer asked for an agent again.",
    )
    assert len(conv.interactions) == 2


async def test_a_first_escalation_by_command_keeps_the_command_out_of_the_transcript(
    w: World,
) -> None:
    history = turn("hello", "greet", "utter_greet", bot="Hi!")
    t = tracker("tom", "/human_handoff", "human_handoff", history=history)
    await run(ESCALATE, t)
    cid = (await w.service.handoff(SenderId("tom"))).conversation_id
    assert cid is not None
    conv = w.sim.conversations[cid]
    assert [(m.author_type, m.text) for m in conv.history] == [("user", "hello"), ("bot", "Hi!")]
    assert conv.messages == []


async def test_history_waiting_in_the_outbox_keeps_its_author(w: World) -> None:
    cid = await escalate(w, "uma")
    item = outbox_text_item(ConversationId(cid), HistoryMessage("bot", "Mon-Fri 9-5."))
    await w.store.outbox_push(SenderId("uma"), item)
    assert await OutboxDrainer(w.service).drain_once()
    last = w.sim.conversations[cid].messages[-1]
    assert (last.author_type, last.text) == ("bot", "Mon-Fri 9-5.")


def notice_tracker(entities: dict[str, str], intent: str = "EXTERNAL_handoff_queued") -> Tracker:
    t = tracker("ned", f"EXTERNAL: {intent}", intent)
    t.latest_message["entities"] = [{"entity": k, "value": v} for k, v in entities.items()]
    return t


async def test_queued_notice_says_the_wait_when_the_trigger_carries_it(w: World) -> None:
    said, events = await run(NOTICE, notice_tracker({"queue": "Support", "queue_ahead": "4",
                                                      "queue_wait": "5"}))  # fmt: skip
    assert said == ["utter_handoff_queued", "utter_handoff_queue_wait"] and slot(events) is True


async def test_queued_notice_without_figures_clears_an_earlier_waits_figures(w: World) -> None:
    said, events = await run(NOTICE, notice_tracker({"queue": "Support"}))
    assert said == ["utter_handoff_queued"] and slot(events) is True
    cleared = {e["name"] for e in events if e.get("event") == "slot" and e["value"] is None}
    assert cleared == {"handoff_queue_ahead", "handoff_queue_wait"}


async def test_the_queue_reminder_says_the_wait_when_it_carries_the_figures(w: World) -> None:
    reminder = "EXTERNAL_handoff_queue_reminder"
    figures = {"queue": "Support", "queue_ahead": "0", "queue_wait": "2"}
    said, events = await run(NOTICE, notice_tracker(figures, reminder))
    assert said == ["utter_handoff_queue_reminder", "utter_handoff_queue_wait"]
    assert slot(events) is True
    said, events = await run(NOTICE, notice_tracker({}, reminder))  # figures of an earlier wait
    assert said == ["utter_handoff_queue_reminder"] and slot(events) is True
    cleared = {e["name"] for e in events if e.get("event") == "slot" and e["value"] is None}
    assert cleared == {"handoff_queue_ahead", "handoff_queue_wait"}


async def test_reopen_posts_at_most_handoff_reopen_history_turns(w: World) -> None:
    cid = await escalate(w, "viv")
    await run(END, active(tracker("viv", "/end_handoff", "end_handoff")))
    conv = w.sim.conversations[cid]
    before = len(conv.messages)
    history = [slot_event(True), slot_event(False), *turn("a", "x", "utter_x", bot="b"),
               *turn("c", "x", "utter_x", bot="d")]  # fmt: skip
    with configured(w, {"handoff_reopen_history": 2}):
        await run(ESCALATE, tracker("viv", "/human_handoff", "human_handoff", history=history))
    assert [(m.author_type, m.text) for m in conv.messages[before:]] == [
        ("user", "c"),
        ("bot", "d"),
    ]
