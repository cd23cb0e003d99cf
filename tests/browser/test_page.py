"""The whole handoff in headless Chromium, as a newcomer would click through it.

The sandbox runs as `python -m bridge sandbox` with its built-in demo bot (the stand-in for
Rasa): these tests check the page, the simulator and the bridge, not Rasa compatibility.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import SandboxProcess

pytestmark = pytest.mark.browser

WAIT_MS = 10_000


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def chat_kinds(page: Any) -> list[str]:
    """The chat log as (kind) classes, oldest first: user, bot, notice, agent, error."""
    classes = page.locator("#chat-log > li").evaluate_all("items => items.map(i => i.className)")
    return [c.removeprefix("msg-") for c in classes]


def test_a_customer_is_handed_to_an_agent_and_back(
    chromium: Any, sandbox: SandboxProcess, screenshots: Path
) -> None:
    page = chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(sandbox.url)
    chat, desk = page.locator("#chat-pane"), page.locator("#desk-pane")
    message = page.get_by_role("textbox", name="Message", exact=True)

    # What runs, said on the page: the bot is the stand-in, not Rasa.
    expect(page.locator("#chat-bot-badge")).to_have_text("demo bot (stand-in for Rasa)")
    expect(page.locator("#api-label")).to_contain_text("Chat Gateway")

    # The bot answers.
    message.fill("hi")
    message.press("Enter")
    expect(chat.locator(".msg-bot").first).to_contain_text("example assistant", timeout=WAIT_MS)

    # Asking for a person: connecting, then queued.
    page.get_by_role("button", name="Talk to a person").click()
    notices = chat.locator(".msg-notice")
    expect(notices.nth(0)).to_contain_text("Connecting you with a person", timeout=WAIT_MS)
    expect(notices.nth(1)).to_contain_text("in the", timeout=WAIT_MS)  # "You're in the … queue"

    # The desk: the waiting conversation, with the bot transcript and the customer's data.
    sender = re.search(r"web-[0-9a-f]+", page.locator("#sender-id").inner_text())
    assert sender is not None
    entry = desk.locator("#conv-list button").first
    expect(entry).to_contain_text(sender[0], timeout=WAIT_MS)
    expect(entry).to_contain_text("waiting")
    entry.click()
    expect(desk.locator("#conv-history")).to_contain_text("hi")
    expect(desk.locator("#conv-history")).to_contain_text("example assistant")
    expect(desk.locator("#conv-customer")).to_contain_text("rasaSenderId")
    expect(desk.locator("#conv-customer")).to_contain_text(sender[0])
    expect(desk.get_by_role("button", name="Leave")).to_be_disabled()

    # The agent accepts: the customer is told, by name (the sandbox's bridge has the
    # simulator's Real-time Metrics credentials, so even the Chat Gateway's agent is named).
    page.get_by_label("Agent name").fill("Anna")
    desk.get_by_role("button", name="Accept").click()
    expect(desk.locator("#conv-state")).to_have_text("with Anna", timeout=WAIT_MS)
    expect(notices.nth(2)).to_contain_text("You're now chatting with Anna", timeout=WAIT_MS)

    # The agent types (the customer sees it), then writes.
    reply = page.get_by_label("Reply to the customer")
    reply.press_sequentially("Hi Ada, I'm Anna. How can I help?")
    expect(page.locator("#chat-typing")).to_have_text("Anna is typing…", timeout=WAIT_MS)
    reply.press("Enter")
    agent_said = chat.locator(".msg-agent")
    expect(agent_said).to_have_count(1, timeout=WAIT_MS)
    expect(agent_said).to_contain_text("Anna (agent)")
    expect(agent_said).to_contain_text("Anna: Hi Ada, I'm Anna. How can I help?")
    expect(page.locator("#chat-typing")).to_be_hidden(timeout=WAIT_MS)

    # The customer answers: it reaches the desk, and the bot says nothing of its own.
    bot_replies_before = chat.locator(".msg-bot").count()
    message.fill("My order #4711 is late")
    message.press("Enter")
    expect(desk.locator("#conv-messages .msg-user")).to_have_text(
        re.compile("My order #4711 is late"), timeout=WAIT_MS
    )

    # The agent leaves: the customer is told, and the bot answers again.
    desk.get_by_role("button", name="Leave").click()
    expect(desk.locator("#conv-state")).to_have_text("ended", timeout=WAIT_MS)
    expect(notices.nth(3)).to_contain_text("has left the chat", timeout=WAIT_MS)
    # The example bot's one question, with its buttons; the customer ignores it.
    expect(notices.nth(4)).to_contain_text("Did the agent solve", timeout=WAIT_MS)
    expect(notices.nth(4).get_by_role("button", name="Yes")).to_be_visible()
    assert chat.locator(".msg-bot").count() == bot_replies_before  # silent during the handoff
    message.fill("what are your opening hours?")
    message.press("Enter")
    expect(chat.locator(".msg-bot").last).to_contain_text("Monday to Friday", timeout=WAIT_MS)

    assert chat_kinds(page) == [
        "user", "bot",                      # hi
        "user", "notice", "notice",         # talk to a person: connecting, queued
        "notice", "agent",                  # joined, the agent's words
        "user",                             # to the agent
        "notice", "notice",                 # the agent left, the survey (ignored)
        "user", "bot",                      # the bot is back
    ]  # fmt: skip
    assert errors == []

    chat.screenshot(path=screenshots / "sandbox-chat-pane.png")
    desk.screenshot(path=screenshots / "sandbox-desk-pane.png")
    page.screenshot(path=screenshots / "sandbox-page.png")
    page.close()


def test_the_keyboard_alone_can_ask_for_a_person(chromium: Any, sandbox: SandboxProcess) -> None:
    page = chromium.new_page()
    page.goto(sandbox.url)
    expect(page.locator("#chat-bot-badge")).to_have_text("demo bot (stand-in for Rasa)")
    expect(page.locator("#conv-view")).to_be_hidden()  # nothing to show before a handoff
    expect(page.locator("#conv-empty")).to_be_visible()
    page.get_by_role("textbox", name="Message", exact=True).focus()
    page.keyboard.press("Alt+H")
    expect(page.locator("#chat-pane .msg-notice").first).to_contain_text(
        "Connecting you with a person", timeout=WAIT_MS
    )
    # Tab reaches the desk's conversation; Enter opens it.
    page.locator("#desk-pane #conv-list button").first.wait_for(timeout=WAIT_MS)
    page.get_by_label("Agent name").focus()
    page.keyboard.press("Tab")
    expect(page.locator("#conv-list button").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#conv-view")).to_be_visible()
    page.close()
