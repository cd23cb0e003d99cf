"""The end-to-end harness: a REAL Rasa 3.6 server, `handoff-bridge serve`, the 8x8 simulator.

    user ──POST /webhooks/callback/webhook──▶ Rasa 3.6 (`rasa run --enable-api`, the example bot)
      ▲                                         │ actions: POST /webhook
      │ every bot message (callback channel)    ▼
    CallbackReceiver ◀── Rasa pushes ◀── `handoff-bridge serve` (a subprocess) ◀──▶ 8x8 simulator
                    (tracker/events, trigger_intent,   │ real Redis, a unique key prefix
                     output_channel=latest)

Per test package (tests/e2e), built once and torn down when its last test is done:
- the Rasa venv (`RASA_VENV`, else ~/.cache/handoff-bridge/rasa-3.6.21). Missing: the tests
  fail under CI=true (CI installs it first), else they are skipped with the install command;
- the example bot's model, trained once into ~/.cache/handoff-bridge/models and reused while
  config.yml, domain.yml, data/ and handoff_policy.py (and the Rasa version) are unchanged;
- the callback receiver (aiohttp on loopback, in a thread of its own, so it answers Rasa
  whichever event loop is running), which records what Rasa sends each user, in order;
- `rasa run` from the repository root, with a generated endpoints.yml (the action endpoint is
  the bridge's /webhook on a port fixed for the package) and credentials.yml (rest + callback);
- only for the tests that ask for it (`short_session_rasa`), a second `rasa run` of a variant
  of the bot whose sessions expire after 3 s (a patched copy of its files, `bot_variant`,
  trained and cached like the bot's own model under a name of its own).

- a bot of its own (`Project`, e.g. `rasa init`'s after add-to-bot, test_add_to_bot_e2e.py) is
  trained the same way and run from its own directory with its own endpoints.yml and
  credentials.yml (`run_rasa(model, project)`).

Per test (parametrized over both 8x8 APIs): a fresh simulator and a fresh `serve` process on
that port, with its own REDIS_KEY_PREFIX, talking to the test's Rasa (`rasa`). When a test
fails, the tails of its Rasa's and the bridge's logs are added to its report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bridge.simulator import SimConversation, Simulator, SimulatorConfig, running_simulator

REPO = Path(__file__).resolve().parents[2]
RASA_VERSION = "3.6.21"
CACHE_ROOT = Path.home() / ".cache" / "handoff-bridge"
DEFAULT_RASA_VENV = CACHE_ROOT / f"rasa-{RASA_VERSION}"
MODEL_DIR = CACHE_ROOT / "models"
INSTALL_COMMAND = "bash scripts/install-rasa-3.6.sh"
# What the trained model depends on (besides the Rasa version).
MODEL_INPUTS = ("config.yml", "domain.yml", "data", "handoff_policy.py")
MODELS_KEPT = 3  # older cached models are deleted

TRAIN_TIMEOUT_S = 900.0
RASA_START_TIMEOUT_S = 180.0
BRIDGE_START_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 80

# Logs shown (their last lines) in the report of a failing e2e test.
_LOGS: dict[str, Path] = {}


# --- reporting ---


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and "e2e" in item.keywords:
        for name, path in list(_LOGS.items()):
            report.sections.append((f"{name}: last lines of {path}", _tail(path)))


# --- small helpers ---


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the process group (the process was started in a session of its own), then
    SIGKILL whatever is left after `timeout`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A blocking GET (only for package setup, where no event loop runs)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


# --- the Rasa venv and the model ---


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"{message}. The end-to-end suite is mandatory under CI=true: CI installs Rasa "
            f"with `{INSTALL_COMMAND}` before running the tests.",
            pytrace=False,
        )
    pytest.skip(f"{message}; install it with `{INSTALL_COMMAND}` (about 2.5 GB, outside the repo)")


def _rasa_dist_info(venv: Path) -> Path | None:
    found = sorted(venv.glob(f"lib/python3*/site-packages/rasa-{RASA_VERSION}.dist-info"))
    return found[0] if found else None


@pytest.fixture(scope="package")
def rasa_venv() -> Path:
    venv = Path(os.environ.get("RASA_VENV") or DEFAULT_RASA_VENV).expanduser()
    if not (venv / "bin" / "rasa").exists():
        _missing(f"no Rasa {RASA_VERSION} in {venv} (set RASA_VENV to use another venv)")
    if _rasa_dist_info(venv) is None:
        _missing(f"the venv {venv} has no rasa=={RASA_VERSION}")
    return venv


def _rasa_env(venv: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH")
    }
    env.update(
        {
            "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            # handoff_policy.py (named in config.yml) is imported from the repository root.
            "PYTHONPATH": str(REPO),
            "RASA_TELEMETRY_ENABLED": "false",
            # Rasa's training cache would otherwise go to ./.rasa in the repository.
            "RASA_CACHE_DIRECTORY": str(MODEL_DIR / "rasa-cache"),
            "RASA_MAX_CACHE_SIZE": "0",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def model_inputs(project: Path = REPO) -> list[Path]:
    files: list[Path] = []
    for name in MODEL_INPUTS:
        path = project / name
        if path.is_dir():
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
            )
        else:
            files.append(path)
    return files


def model_key(venv: Path, project: Path = REPO) -> str:
    """A hash of everything the model depends on: the training inputs and the Rasa version."""
    digest = hashlib.sha256()
    dist = _rasa_dist_info(venv)
    digest.update((dist.name if dist else "rasa-unknown").encode())
    for path in model_inputs(project):
        digest.update(b"\0" + str(path.relative_to(project)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Two test runs at once train once: the second waits, then finds the model."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _prune_models(keep: Path, bot: str) -> None:
    models = sorted(MODEL_DIR.glob(f"{bot}-*.tar.gz"), key=lambda p: p.stat().st_mtime)
    for old in [m for m in models if m != keep][: max(0, len(models) - MODELS_KEPT)]:
        with contextlib.suppress(OSError):
            old.unlink()
            old.with_name(old.name.replace(".tar.gz", ".log")).unlink(missing_ok=True)


def train_model(venv: Path, bot: str, project: Path = REPO) -> Path:
    """The model of the Rasa project in `project`, trained once and cached outside the
    repository as `{bot}-{model_key}` (the `MODELS_KEPT` latest of each `bot`)."""
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    name = f"{bot}-{model_key(venv, project)}"
    model = MODEL_DIR / f"{name}.tar.gz"
    with _file_lock(MODEL_DIR / ".train.lock"):
        if model.exists():
            model.touch()  # most recently used: pruned last
            return model
        log = MODEL_DIR / f"{name}.log"
        with tempfile.TemporaryDirectory(dir=MODEL_DIR, prefix=".train-") as out:
            cmd = [
                str(venv / "bin" / "rasa"), "train",
                "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
                "--out", out, "--fixed-model-name", name,
            ]  # fmt: skip
            with log.open("wb") as sink:
                try:
                    result = subprocess.run(
                        cmd, cwd=project, env=_rasa_env(venv), stdout=sink,
                        stderr=subprocess.STDOUT, timeout=TRAIN_TIMEOUT_S, check=False,
                    )  # fmt: skip
                except subprocess.TimeoutExpired:
                    pytest.fail(f"rasa train took over {TRAIN_TIMEOUT_S} s:\n{_tail(log)}")
            trained = Path(out) / f"{name}.tar.gz"
            if result.returncode != 0 or not trained.exists():
                pytest.fail(
                    f"rasa train failed (exit {result.returncode}); last lines of {log}:\n"
                    f"{_tail(log)}",
                    pytrace=False,
                )
            os.replace(trained, model)
        _prune_models(keep=model, bot=bot)
    return model


def bot_variant(dest: Path, **session_config: object) -> Path:
    """A copy of the example bot's training files in `dest` whose domain differs only in the
    given `session_config` values (each line rewritten in place, the rest kept byte for byte),
    so that it trains into a model of its own."""
    for path in model_inputs():
        copy = dest / path.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    domain = dest / "domain.yml"
    text = domain.read_text()
    for key, value in session_config.items():
        text, count = re.subn(
            rf"^(\s+{key}:[ \t]*)[^\s#]+", rf"\g<1>{json.dumps(value)}", text, flags=re.M
        )
        assert count == 1, f"domain.yml sets {key} {count} times, not once"
    domain.write_text(text)
    wanted = {
        **yaml.safe_load((REPO / "domain.yml").read_text())["session_config"],
        **session_config,
    }
    assert yaml.safe_load(text)["session_config"] == wanted
    return dest


@pytest.fixture(scope="package")
def rasa_model(rasa_venv: Path) -> Path:
    """The example bot's model."""
    return train_model(rasa_venv, "example-bot")


# The example bot with sessions that expire after 3 s (not its 60 min), and nothing else changed.
SHORT_SESSION = {"session_expiration_time": 0.05}  # minutes


@pytest.fixture(scope="package")
def short_session_model(rasa_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = bot_variant(tmp_path_factory.mktemp("short-session-bot"), **SHORT_SESSION)
    return train_model(rasa_venv, "short-session-bot", project)


# --- the callback receiver ---


@dataclass
class CallbackReceiver:
    """Rasa's callback channel POSTs each message for a user here ({"recipient_id", "text",
    ...}); they are kept per sender, in arrival order. Runs on its own thread and loop."""

    url: str = ""
    _messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: Callable[[], object] | None = None
    _thread: threading.Thread | None = None

    def messages(self, sender: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages.get(sender, []))

    def texts(self, sender: str) -> list[str | None]:
        return [m.get("text") for m in self.messages(sender)]

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        sender = str(body.get("recipient_id")) if isinstance(body, dict) else ""
        with self._lock:
            self._messages[sender].append(body if isinstance(body, dict) else {"raw": body})
        return web.json_response({"received": True})

    def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/bot"
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/bot", self._receive)
            runner = web.AppRunner(app, access_log=None)
            try:
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            self._stop = lambda: loop.call_soon_threadsafe(loop.stop)
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="rasa-callback-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            raise RuntimeError(f"the callback receiver did not start: {failure}")

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
        if self._thread is not None:
            self._thread.join(10)


@pytest.fixture(scope="package")
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


# --- Rasa ---


@dataclass(frozen=True)
class RasaServer:
    url: str
    token: str
    log: Path
    pid: int = 0  # `rasa run`'s, the leader of its own process group (to stall it: SIGSTOP)


@pytest.fixture(scope="package")
def bridge_port() -> int:
    """Rasa's action endpoint is fixed when Rasa starts: every test's `serve` uses this port."""
    return _free_port()


def _wait_for_rasa(proc: subprocess.Popen[bytes], server: RasaServer) -> None:
    deadline = time.monotonic() + RASA_START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(
                f"rasa run exited with {proc.returncode} while starting; last lines of "
                f"{server.log}:\n{_tail(server.log)}",
                pytrace=False,
            )
        with contextlib.suppress(OSError):
            status, body = _get(f"{server.url}/version")
            if status == 200 and json.loads(body).get("version") == RASA_VERSION:
                break
        if time.monotonic() > deadline:
            pytest.fail(f"rasa run did not answer /version within {RASA_START_TIMEOUT_S} s")
        time.sleep(0.25)
    status, body = _get(f"{server.url}/status?token={server.token}")
    assert status == 200, f"/status with the token answered {status}: {body[:300]!r}"
    assert json.loads(body).get("model_id"), f"Rasa has no model loaded: {body[:300]!r}"
    status, _ = _get(f"{server.url}/status")
    assert status == 401, f"/status without the token answered {status}: the API must be guarded"


@contextlib.contextmanager
def _running_rasa(
    venv: Path,
    model: Path,
    receiver: CallbackReceiver,
    bridge_port: int,
    tmp: Path,
    project: Project | None = None,
) -> Iterator[RasaServer]:
    """`rasa run --enable-api` of `model`: by default from the repository root, actions at the
    bridge, callback channel to the receiver; or, given a `project`, from its directory with
    its own endpoints.yml and credentials.yml."""
    if project is None:
        endpoints = tmp / "endpoints.yml"
        endpoints.write_text(
            yaml.safe_dump({"action_endpoint": {"url": f"http://127.0.0.1:{bridge_port}/webhook"}})
        )
        credentials = tmp / "credentials.yml"
        credentials.write_text(yaml.safe_dump({"rest": None, "callback": {"url": receiver.url}}))
        cwd, env = REPO, _rasa_env(venv)
    else:
        endpoints, credentials = project.root / "endpoints.yml", project.root / "credentials.yml"
        cwd, env = project.root, {**_rasa_env(venv), **project.env}
    port = _free_port()
    server = RasaServer(f"http://127.0.0.1:{port}", secrets.token_urlsafe(16), tmp / "rasa.log")
    cmd = [
        str(venv / "bin" / "rasa"), "run", "--enable-api", "--auth-token", server.token,
        "--model", str(model), "--endpoints", str(endpoints),
        "--credentials", str(credentials), "--interface", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    _LOGS["rasa"] = server.log
    with server.log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = dataclasses.replace(server, pid=proc.pid)
    try:
        _wait_for_rasa(proc, server)
        yield server
    finally:
        _stop_group(proc)


@dataclass(frozen=True)
class Project:
    """A Rasa project of its own (not the example bot), run from its directory."""

    root: Path
    env: dict[str, str]  # for Rasa, on top of _rasa_env (e.g. PYTHONPATH="", secrets)


@pytest.fixture(scope="package")
def run_rasa(
    rasa_venv: Path,
    callback_receiver: CallbackReceiver,
    bridge_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[Path], contextlib.AbstractContextManager[RasaServer]]:
    """`with run_rasa(model) as server:` a Rasa server of `model` for the package's bridge
    port and callback receiver (`run_rasa(model, project)`: from that project's directory)."""

    def run(
        model: Path, project: Project | None = None
    ) -> contextlib.AbstractContextManager[RasaServer]:
        tmp = tmp_path_factory.mktemp("rasa")
        return _running_rasa(rasa_venv, model, callback_receiver, bridge_port, tmp, project)

    return run


@pytest.fixture(scope="package")
def rasa_server(run_rasa: Callable[..., Any], rasa_model: Path) -> Iterator[RasaServer]:
    """The example bot, for every test but those that ask for `short_session_rasa`."""
    with run_rasa(rasa_model) as server:
        yield server


@pytest.fixture(scope="package")
def short_session_rasa(
    run_rasa: Callable[..., Any], short_session_model: Path
) -> Iterator[RasaServer]:
    """A second Rasa server, of the short-session variant; started only for the tests that
    use it (the bridge's port is the same: one `serve` runs at a time)."""
    with run_rasa(short_session_model) as server:
        yield server


# --- the bridge ---

_OWN_ENV_PREFIXES = ("EIGHTBYEIGHT_", "RASA_", "REDIS_", "HANDOFF_", "BRIDGE_", "RELAY_", "EVENT_")


@dataclass
class BridgeProcess:
    """`handoff-bridge serve` as a real process, logging to a file."""

    env: dict[str, str]
    port: int
    log: Path
    cwd: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve"], env=self.env, cwd=self.cwd,
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + BRIDGE_START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"serve exited with {self.proc.returncode}; last lines of {self.log}:\n"
                    f"{_tail(self.log)}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{self.url}/ready") as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise AssertionError(f"serve not ready within {BRIDGE_START_TIMEOUT_S} s")
            await asyncio.sleep(0.05)

    async def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (serve shuts down gracefully), SIGKILL after `grace_s`. Waits without
        blocking the loop: the simulator in it may still have to answer serve."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(proc.wait), grace_s)
        _stop_group(proc, timeout=5.0)


# --- the world of one test ---


@dataclass(frozen=True)
class Turn:
    """One user turn as Rasa's tracker has it."""

    text: str
    intent: str | None
    confidence: float | None
    actions: list[str]  # the actions Rasa ran for it, in order, up to its action_listen
    bot_texts: list[str | None]  # what the bot said in that turn (tracker `bot` events)


class Responses:
    """The example bot's responses, read from domain.yml, rendered like Rasa picks them:
    a variation whose slot conditions all hold wins, else the unconditional one."""

    def __init__(self, domain: dict[str, Any]) -> None:
        self._responses: dict[str, list[dict[str, Any]]] = domain["responses"]

    def __call__(self, name: str, **slots: str | None) -> str:
        variations = self._responses[name]
        for variation in variations:
            conditions = variation.get("condition") or []
            if conditions and all(slots.get(c["name"]) == c["value"] for c in conditions):
                return str(variation["text"]).format(**slots)
        plain = next(v for v in variations if not v.get("condition"))
        return str(plain["text"]).format(**slots)


@dataclass
class E2E:
    """Everything one end-to-end test talks to."""

    api: str
    sim: Simulator
    rasa: RasaServer
    inbox: CallbackReceiver
    bridge: BridgeProcess
    http: aiohttp.ClientSession
    say_: Responses

    def new_sender(self) -> str:
        return f"e2e-{self.api}-{uuid.uuid4().hex[:10]}"

    # the user

    async def say(self, sender: str, text: str) -> list[str | None]:
        """The user types `text` on the callback channel. Rasa answers "success" only once it
        has handled the turn and posted the bot's replies to the receiver, so this returns
        what the bot said in that turn (plus, at most, a push that raced in right after it)."""
        before = len(self.inbox.messages(sender))
        async with self.http.post(
            f"{self.rasa.url}/webhooks/callback/webhook", json={"sender": sender, "message": text}
        ) as resp:
            body = await resp.text()
            assert resp.status == 200 and body == "success", f"{resp.status}: {body[:300]}"
        return self.inbox.texts(sender)[before:]

    # Rasa's tracker

    async def tracker(self, sender: str) -> dict[str, Any]:
        async with self.http.get(
            f"{self.rasa.url}/conversations/{sender}/tracker",
            params={"token": self.rasa.token, "include_events": "ALL"},
        ) as resp:
            assert resp.status == 200, await resp.text()
            data: dict[str, Any] = await resp.json()
            return data

    async def slot(self, sender: str, name: str) -> Any:
        return (await self.tracker(sender))["slots"].get(name)

    async def last_turn(self, sender: str, text: str) -> Turn:
        """The latest user turn whose text is `text`, and what Rasa did for it."""
        events: list[dict[str, Any]] = (await self.tracker(sender))["events"]
        starts = [i for i, e in enumerate(events) if e["event"] == "user" and e["text"] == text]
        assert starts, f"no user turn {text!r} in the tracker"
        start = starts[-1]
        # The turn ends with Rasa's next action_listen (pushes may follow it).
        end = next(
            (
                i + 1
                for i in range(start + 1, len(events))
                if events[i]["event"] == "action" and events[i]["name"] == "action_listen"
            ),
            len(events),
        )
        after = events[start + 1 : end]
        intent = events[start].get("parse_data", {}).get("intent") or {}
        return Turn(
            text=text,
            intent=intent.get("name"),
            confidence=intent.get("confidence"),
            actions=[e["name"] for e in after if e["event"] == "action"],
            bot_texts=[e.get("text") for e in after if e["event"] == "bot"],
        )

    # 8x8

    def conversations_of(self, sender: str) -> list[SimConversation]:
        """The simulator's conversations whose customer data names this Rasa sender."""
        return [c for c in self.sim.conversations.values() if sender in json.dumps(c.customer)]

    def conversation_of(self, sender: str) -> SimConversation:
        found = self.conversations_of(sender)
        assert len(found) == 1, f"{len(found)} conversations for {sender} in the simulator"
        return found[0]

    # the bridge

    async def metrics(self) -> dict[str, float]:
        """The bridge's counters, summed over labels: {sample name: value}."""
        async with self.http.get(f"{self.bridge.url}/metrics") as resp:
            text = await resp.text()
        totals: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] += sample.value
        return totals

    async def settled(self, within: float = 20.0) -> None:
        """Wait until 8x8 has delivered every event and the bridge has finished with each one
        (relayed into Rasa, or deliberately ignored). Pushes into Rasa return only after Rasa
        posted to the callback channel, so the receiver then holds all the user will see."""
        deadline = time.monotonic() + within
        await self.sim.idle(timeout=within)
        while True:
            m = await self.metrics()
            dead = m.get("handoff_dead_letters_total", 0.0)
            assert dead == 0, f"the bridge dead-lettered {dead} event(s)"
            done = (
                m.get("handoff_relay_outcomes_total", 0.0)
                + m.get("handoff_events_ignored_total", 0.0)
                + m.get("handoff_events_duplicate_total", 0.0)
            )
            if done >= len(self.sim.delivered()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the bridge did not finish within {within} s: {done:.0f} of "
                    f"{len(self.sim.delivered())} delivered events done"
                )
            await asyncio.sleep(0.02)


@pytest.fixture(params=["gateway", "chat-v2"])
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="package")
def responses() -> Responses:
    return Responses(yaml.safe_load((REPO / "domain.yml").read_text()))


@pytest.fixture
def rasa(request: pytest.FixtureRequest) -> RasaServer:
    """The Rasa server of a test: the example bot's, unless the test names another server
    fixture: `@pytest.mark.parametrize("rasa", ["short_session_rasa"], indirect=True)`."""
    server: RasaServer = request.getfixturevalue(getattr(request, "param", "rasa_server"))
    return server


@pytest.fixture
def bridge_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Extra settings for the test's `serve` process; a test sets them with
    `@pytest.mark.parametrize("bridge_env", [{...}], indirect=True)`."""
    return dict(getattr(request, "param", {}))


@pytest.fixture
async def e2e(
    request: pytest.FixtureRequest,
    api: str,
    bridge_env: dict[str, str],
    rasa: RasaServer,
    callback_receiver: CallbackReceiver,
    bridge_port: int,
    responses: Responses,
    real_redis_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> AsyncIterator[E2E]:
    """A fresh simulator (8x8, `api`'s webhook family) and a fresh `serve` process, for the
    test's Rasa server."""
    bridge_url = f"http://127.0.0.1:{bridge_port}"
    config = SimulatorConfig(
        api_key="e2e-key", api_secret="e2e-secret", tenant_id="e2e-tenant",
        customer_id="e2e-tenant", channel_id="e2e-channel", queue_id="101",
        webhook_url=f"{bridge_url}/8x8/events", api=api,  # type: ignore[arg-type]
    )  # fmt: skip
    async with running_simulator(config) as sim, aiohttp.ClientSession() as http:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_ENV_PREFIXES)}
        env.update({
            "EIGHTBYEIGHT_API": api, "EIGHTBYEIGHT_BASE_URL": sim.base_url,
            "EIGHTBYEIGHT_API_KEY": config.api_key, "EIGHTBYEIGHT_API_SECRET": config.api_secret,
            "EIGHTBYEIGHT_TENANT_ID": config.tenant_id, "EIGHTBYEIGHT_CHANNEL_ID": config.channel_id,
            "EIGHTBYEIGHT_QUEUE_ID": config.queue_id,
            "RASA_URL": rasa.url, "RASA_TOKEN": rasa.token,
            "REDIS_URL": real_redis_url, "REDIS_KEY_PREFIX": key_prefix,
            "BRIDGE_HOST": "127.0.0.1", "BRIDGE_PORT": str(bridge_port),
            "RELAY_RETRY_CAP_S": "0.5", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        env.update(bridge_env)
        # A test's own settings for serve: @pytest.mark.bridge_env(HANDOFF_QUEUE_TIMEOUT_S="2").
        for marker in request.node.iter_markers("bridge_env"):
            env.update({k: str(v) for k, v in marker.kwargs.items()})
        bridge = BridgeProcess(env, bridge_port, tmp_path / "bridge.log", cwd=tmp_path)
        _LOGS["rasa"], _LOGS["bridge"] = rasa.log, bridge.log
        bridge.spawn()
        try:
            await bridge.wait_ready(http)
            yield E2E(api, sim, rasa, callback_receiver, bridge, http, responses)
        finally:
            await bridge.stop()
