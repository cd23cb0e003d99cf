"""`handoff-bridge add-to-bot` on Rasa's own `rasa init` bot (the template shipped inside the
installed Rasa 3.6 package, not a copy of ours), trained with that Rasa and run from its own
directory with the endpoints.yml and credentials.yml add-to-bot wrote: the whole handoff
through Rasa's callback channel, the bridge as `serve`, 8x8 as the simulator.

A second bot, the same template grown an action of its own served by its own stock rasa-sdk
server, shows that action still answering through the bridge (BRIDGE_ACTION_UPSTREAM, as
add-to-bot says). Both train with the template's own settings (Rasa's default pipeline and
policies, 100 epochs): about 70 s each on two cores, once; the models are cached like the
example bot's (conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import E2E, Project, RasaServer, Responses, train_model
from tests.e2e.test_handoff_e2e import agent_name, agent_talks, escalate, user_talks_to_agent
from tests.support.sdk_server import running_sdk_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # the first test trains the bot

# Rasa expands ${BRIDGE_ACTION_TOKEN} in the endpoints.yml add-to-bot wrote, and refuses to
# start without it.
ACTION_TOKEN = "e2e-action-token"


def _rasa_init_template(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages/rasa/cli/initial_project"))
    assert found, f"no rasa/cli/initial_project in {venv}"
    return found[0]


def _add_to_bot(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "add-to-bot", str(root), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def moodbot(
    rasa_venv: Path,
    callback_receiver: Any,
    bridge_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Project:
    """`rasa init`'s bot with the handoff added by add-to-bot, as a user would run it."""
    root = tmp_path_factory.mktemp("moodbot") / "bot"
    shutil.copytree(
        _rasa_init_template(rasa_venv), root, ignore=shutil.ignore_patterns("__pycache__")
    )
    args = ("--bridge-url", f"http://127.0.0.1:{bridge_port}/webhook",
            "--channel", "callback", "--callback-url", callback_receiver.url)  # fmt: skip
    assert _add_to_bot(root, "--check", *args).returncode == 1
    first = _add_to_bot(root, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "write out Rasa 3.6's default policies" in first.stdout
    again = _add_to_bot(root, *args)
    assert (again.returncode, again.stdout) == (
        0,
        "nothing to change: the handoff is already there\n",
    )
    assert _add_to_bot(root, "--check", *args).returncode == 0
    # No PYTHONPATH: Rasa must import handoff_policy.py from the project directory.
    return Project(root, {"PYTHONPATH": "", "BRIDGE_ACTION_TOKEN": ACTION_TOKEN})


@pytest.fixture(scope="module")
def moodbot_rasa(
    run_rasa: Callable[..., Any], rasa_venv: Path, moodbot: Project
) -> Iterator[RasaServer]:
    model = train_model(rasa_venv, "rasa-init-bot", moodbot.root)
    with run_rasa(model, moodbot) as server:
        yield server


@pytest.fixture
def responses(moodbot: Project) -> Responses:
    return Responses(yaml.safe_load((moodbot.root / "domain.yml").read_text()))


@pytest.mark.parametrize("rasa", ["moodbot_rasa"], indirect=True)
async def test_the_rasa_init_bot_hands_off_to_an_agent_and_back(e2e: E2E) -> None:
    say = e2e.say_
    sender = e2e.new_sender()
    seen: list[str | None] = []

    # The bot still answers its own intents.
    assert await e2e.say(sender, "hello") == [say("utter_greet")]
    seen.append(say("utter_greet"))

    # Escalation opens an 8x8 conversation; an agent joins and writes, in order.
    await escalate(e2e, sender, "I want to talk to a human", seen)
    conv = e2e.conversation_of(sender)
    await e2e.sim.desk.accept(conv.id, agent_name="Anna")
    await e2e.settled()
    seen.append(say("utter_handoff_agent_joined", handoff_agent=agent_name(e2e, "Anna")))
    assert e2e.inbox.texts(sender) == seen
    await agent_talks(e2e, sender, conv.id, ["Hi, I'm Anna.", "How can I help?"], seen)

    # Whatever NLU makes of them, the user's words reach the agent; nothing ends the chat.
    for text in ("hello", "close my account", "stop"):
        await user_talks_to_agent(e2e, sender, conv.id, text)
        assert await e2e.slot(sender, "handoff_active") is True
    assert e2e.sim.conversation(conv.id).interaction is not None

    # The agent leaves: the bot is back.
    await e2e.sim.desk.leave(conv.id)
    await e2e.settled()
    seen.append(say("utter_handoff_agent_left", handoff_agent=agent_name(e2e, "Anna")))
    assert e2e.inbox.texts(sender) == seen
    assert await e2e.say(sender, "hello") == [say("utter_greet")]
    seen.append(say("utter_greet"))

    # Escalating again reopens the same conversation.
    await escalate(e2e, sender, "I want to talk to a human", seen)
    assert e2e.conversation_of(sender) is conv and len(conv.interactions) == 2

    # Only the explicit /end_handoff ends it.
    assert await e2e.say(sender, "/end_handoff") == [say("utter_handoff_ended")]
    seen.append(say("utter_handoff_ended"))
    assert await e2e.slot(sender, "handoff_active") is False
    assert e2e.sim.conversation(conv.id).interaction is None
    await e2e.settled()
    assert e2e.inbox.texts(sender) == seen

    # /restart runs the fragment's action_restart (the bridge's): the 8x8 chat ends too.
    await escalate(e2e, sender, "I want to talk to a human", seen)
    assert e2e.sim.conversation(conv.id).interaction is not None
    await e2e.say(sender, "/restart")
    assert e2e.sim.conversation(conv.id).interaction is None
    assert await e2e.slot(sender, "handoff_active") is False
    assert await e2e.say(sender, "hello") == [say("utter_greet")]


# --- a bot with an action server of its own ---

SHOP_NLU = """\
version: "3.1"
nlu:
- intent: order_status
  examples: |
    - where is my order
    - order status
    - has my order shipped
    - track my order
    - what about my order
rules:
- rule: order status
  steps:
  - intent: order_status
  - action: action_order_status
"""


@pytest.fixture(scope="module")
def shop_actions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bot's own rasa-sdk server (stock `python -m rasa_sdk`), with its own action."""
    with running_sdk_server(tmp_path_factory.mktemp("shop-actions")) as url:
        yield url


@pytest.fixture(scope="module")
def shop_bot(
    rasa_venv: Path,
    callback_receiver: Any,
    bridge_port: int,
    shop_actions: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Project, str]:
    """`rasa init`'s bot grown an action of its own, served by its own rasa-sdk server, before
    add-to-bot. Returns the project and the BRIDGE_ACTION_UPSTREAM add-to-bot told us to set."""
    root = tmp_path_factory.mktemp("shopbot") / "bot"
    shutil.copytree(
        _rasa_init_template(rasa_venv), root, ignore=shutil.ignore_patterns("__pycache__")
    )
    with (root / "domain.yml").open("a") as domain:
        domain.write("\nactions:\n  - action_order_status\n")
    (root / "domain.yml").write_text(
        (root / "domain.yml").read_text().replace("intents:\n", "intents:\n  - order_status\n", 1)
    )
    (root / "data" / "shop.yml").write_text(SHOP_NLU)
    (root / "endpoints.yml").write_text(f"action_endpoint:\n  url: {shop_actions}\n")
    done = _add_to_bot(
        root, "--bridge-url", f"http://127.0.0.1:{bridge_port}/webhook",
        "--channel", "callback", "--callback-url", callback_receiver.url,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    upstream = f"BRIDGE_ACTION_UPSTREAM={shop_actions}"
    assert upstream in done.stdout
    return Project(root, {"PYTHONPATH": "", "BRIDGE_ACTION_TOKEN": ACTION_TOKEN}), shop_actions


@pytest.fixture(scope="module")
def shop_rasa(
    run_rasa: Callable[..., Any], rasa_venv: Path, shop_bot: tuple[Project, str]
) -> Iterator[RasaServer]:
    project, _ = shop_bot
    model = train_model(rasa_venv, "rasa-init-shop-bot", project.root)
    with run_rasa(model, project) as server:
        yield server


@pytest.fixture
def bridge_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if getattr(request, "param", None) != "shop":
        return {}
    _, upstream = request.getfixturevalue("shop_bot")
    return {"BRIDGE_ACTION_UPSTREAM": upstream}


@pytest.mark.parametrize(("rasa", "bridge_env"), [("shop_rasa", "shop")], indirect=True)
async def test_the_bots_own_action_still_answers_through_the_bridge(e2e: E2E) -> None:
    sender = e2e.new_sender()
    assert await e2e.say(sender, "where is my order") == [f"Your order {sender} has shipped."]
    assert await e2e.slot(sender, "order_status") is None  # not in the domain: Rasa drops it
    turn = await e2e.last_turn(sender, "where is my order")
    assert turn.actions == ["action_order_status", "action_listen"]
    seen: list[str | None] = [f"Your order {sender} has shipped."]
    await escalate(e2e, sender, "I want to talk to a human", seen)
    await user_talks_to_agent(e2e, sender, e2e.conversation_of(sender).id, "where is my order")
