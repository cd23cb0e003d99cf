"""`python -m bridge.simulator` serves until interrupted and prints how to reach it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import pytest

from bridge.settings import Settings
from bridge.simulator.cli import run


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("EIGHTBYEIGHT_", "BRIDGE_"))
    }


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# Started in the background by a shell (`... &`), a program inherits SIGINT ignored.
@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "background"])
async def test_the_module_serves_prints_demo_credentials_and_stops_on_ctrl_c(
    tmp_path: Path, sigint_ignored: bool
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "faulthandler",  # SIGABRT, sent below if it does not stop, dumps its stacks to stderr
        "-m",
        "bridge.simulator",
        "--port",
        "0",
        "--webhook-url",
        "http://127.0.0.1:9/hook",
        cwd=tmp_path,  # no .env here
        env=_clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=_ignore_sigint if sigint_ignored else None,
    )
    assert process.stdout is not None and process.stderr is not None
    # Read all along: a child writing to a full pipe nobody reads would block, even on exit.
    stderr = asyncio.ensure_future(process.stderr.read())
    try:
        lines: list[str] = []
        async with asyncio.timeout(20):
            while not lines or not lines[-1].startswith("Ctrl-C"):
                lines.append((await process.stdout.readline()).decode().rstrip())
        banner = "\n".join(lines)
        base_url = re.search(r"listening on (http://\S+)", banner)
        key = re.search(r"EIGHTBYEIGHT_API_KEY=(eght_\S+)", banner)
        assert base_url and key, banner
        assert "EIGHTBYEIGHT_TENANT_ID=demo-tenant" in banner
        assert "http://127.0.0.1:9/hook" in banner
        async with aiohttp.ClientSession() as http:
            async with http.get(base_url.group(1) + "/chat-gateway/v1/conversations") as resp:
                assert resp.status == 401  # the made-up key is required...
            headers = {"x-api-key": key.group(1)}
            async with http.get(
                base_url.group(1) + "/chat-gateway/v1/conversations", headers=headers
            ) as resp:
                assert resp.status == 200  # ...and accepted
        process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(10):
                status = await process.wait()
        except TimeoutError:
            process.send_signal(signal.SIGABRT)
            await process.wait()
            pytest.fail(f"not stopped 10 s after Ctrl-C; its stderr:\n{(await stderr).decode()}")
        assert status == 0, (await stderr).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await stderr


def test_run_reports_a_taken_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = run("127.0.0.1", port, None, Settings(_env_file=None))  # type: ignore[call-arg]
    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


async def test_the_banner_prints_demo_metrics_credentials_never_the_operators() -> None:
    from pydantic import SecretStr

    from bridge.simulator import SimulatorConfig, running_simulator
    from bridge.simulator.cli import _banner

    base = Settings(_env_file=None)  # type: ignore[call-arg]
    own = base.model_copy(update={"eightbyeight_rtm_client_id": SecretStr("my-id"),
                                  "eightbyeight_rtm_client_secret": SecretStr("my-secret")})  # fmt: skip
    async with running_simulator(SimulatorConfig.from_settings(base)) as sim:
        assert "  EIGHTBYEIGHT_RTM_CLIENT_SECRET=demo-rtm-secret" in _banner(sim)
    async with running_simulator(SimulatorConfig.from_settings(own)) as sim:
        assert sim.config.rtm_client_secret == "my-secret"
        assert not any("my-secret" in line for line in _banner(sim))
