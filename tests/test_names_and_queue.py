"""Tables for the pure parts of names and queue figures: the wait, agent messages, names."""

from __future__ import annotations

import pytest

from bridge.agent_names import AgentNames, check_message_format, format_agent_message
from bridge.eightbyeight.events import ChatEvent, EventKind
from bridge.eightbyeight.realtime import QueueFigures
from bridge.handoff import Handoff
from bridge.queue_status import describe_queue, queue_entities, queue_notice, wait_minutes


@pytest.mark.parametrize(
    ("avg_ms", "minutes"),
    [(None, None), (-1, None), (0, 1), (59_000, 1), (61_000, 2), (150_000, 3), (181_000, 5),
     (300_000, 5), (301_000, 10), (16 * 60_000, 20), (44 * 60_000, 45), (61 * 60_000, 90),
     (121 * 60_000, 150)],
)  # fmt: skip
def test_wait_minutes_rounds_up_to_round_numbers(avg_ms: float | None, minutes: int | None) -> None:
    assert wait_minutes(avg_ms) == minutes


def figures(
    waiting: int | None, avg_ms: float | None, name: str | None = "Support"
) -> QueueFigures:
    return QueueFigures("101", name, waiting, avg_ms)


@pytest.mark.parametrize(
    ("name", "fig", "entities"),
    [
        ("Support", None, {"queue": "Support"}),
        (None, None, {}),
        (None, figures(5, 240_000), {"queue": "Support", "queue_ahead": "4", "queue_wait": "5"}),
        ("Billing", figures(1, 10_000), {"queue": "Billing", "queue_ahead": "0", "queue_wait": "1"}),
        ("Billing", figures(0, 10_000), {"queue": "Billing", "queue_ahead": "0", "queue_wait": "1"}),
        ("Billing", figures(3, None), {"queue": "Billing"}),  # both or neither
        ("Billing", figures(None, 60_000), {"queue": "Billing"}),
    ],
)  # fmt: skip
def test_queue_entities(
    name: str | None, fig: QueueFigures | None, entities: dict[str, str]
) -> None:
    assert queue_entities(name, fig) == entities


@pytest.mark.parametrize(
    ("name", "fig", "text"),
    [
        (None, None, "You're in the queue. The next available agent will be with you."),
        ("Billing", None, "You're in the queue for Billing. The next available agent will be with you."),
        (None, figures(5, 240_000), "You're in the queue for Support. There are about 4 people "
         "ahead of you; the wait is usually under 5 minutes."),
        (None, figures(2, 1_000), "You're in the queue for Support. There's about 1 person ahead "
         "of you; the wait is usually under 1 minute."),
        (None, figures(1, 100_000), "You're in the queue for Support. You're next in line; the "
         "wait is usually under 2 minutes."),
    ],
)  # fmt: skip
def test_describe_queue(name: str | None, fig: QueueFigures | None, text: str) -> None:
    assert describe_queue(name, fig) == text


async def test_queue_notice_without_metrics_says_what_it_knows() -> None:
    text = await queue_notice(Handoff(queue="101"), None)
    assert text == "You're in the queue. The next available agent will be with you."


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{agent_name}: {text}", None),
        ("{text}", None),
        ("{text} (from {agent_name})", None),
        ("{agent_name}", "must contain {text}"),
        ("{agent}: {text}", "knows only {agent_name} and {text}, not {agent}"),
        ("{text", "is not a valid format (unbalanced { or })"),
    ],
)
def test_check_message_format(template: str, problem: str | None) -> None:
    assert check_message_format(template) == problem


@pytest.mark.parametrize(
    ("template", "name", "text", "shown"),
    [
        ("{agent_name}: {text}", "Anna", "Hi", "Anna: Hi"),
        ("{agent_name}: {text}", None, "Hi", "Hi"),  # no name: the words alone
        ("{agent_name}: {text}", "Anna", None, None),  # an attachment alone
        ("{text}", "Anna", "Hi", "Hi"),
        ("{agent_name} wrote: {text}", "{text}", "a {agent_name} b", "{text} wrote: a {agent_name} b"),
    ],
)  # fmt: skip
def test_format_agent_message(
    template: str, name: str | None, text: str | None, shown: str | None
) -> None:
    assert format_agent_message(template, name, text) == shown


class _Directory:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def agent_name(self, agent_id: str) -> str | None:
        self.asked.append(agent_id)
        return {"ag1": "Anna"}.get(agent_id)


@pytest.mark.parametrize(
    ("event", "name", "asked"),
    [
        (ChatEvent(EventKind.AGENT_JOINED, "MEMBERS_CHANGED", agent_id="ag1"), "Anna", ["ag1"]),
        (ChatEvent(EventKind.AGENT_MESSAGE, "MESSAGE", agent_id="ag1", text="x"), "Anna", ["ag1"]),
        (ChatEvent(EventKind.AGENT_LEFT, "MEMBERS_CHANGED", agent_id="ag2"), None, ["ag2"]),
        (ChatEvent(EventKind.AGENT_JOINED, "AGENT_JOINED", agent_id="ag1", agent_name="Bo"), "Bo", []),
        (ChatEvent(EventKind.QUEUED, "QUEUED", queue_id="101"), None, []),
        (ChatEvent(EventKind.USER_LEFT, "MEMBERS_CHANGED", agent_id="ag1"), None, []),
    ],
)  # fmt: skip
async def test_agent_names_fill_in_only_missing_agent_names(
    event: ChatEvent, name: str | None, asked: list[str]
) -> None:
    directory = _Directory()
    completed = await AgentNames(directory).complete(event)  # type: ignore[arg-type]
    assert completed.agent_name == name and directory.asked == asked
    assert completed.agent_id == event.agent_id and completed.kind == event.kind
