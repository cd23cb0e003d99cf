"""What the docs say about `action_endpoint: token: ${BRIDGE_ACTION_TOKEN}`, checked with the
real Rasa 3.6's own endpoint reader (rasa.utils.endpoints): unquoted it is expanded and sent
as the query parameter `token`; quoted it is sent literally; unset, Rasa refuses to start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, _rasa_env

pytestmark = pytest.mark.e2e

READ = """
import sys
from rasa.utils.endpoints import read_endpoint_config
try:
    endpoint = read_endpoint_config(sys.argv[1], "action_endpoint")
    print("params", endpoint.combine_parameters())
except Exception as exc:
    print("refused", type(exc).__name__)
"""


def _rasa_reads(venv: Path, endpoints: Path, token: str | None) -> str:
    env = _rasa_env(venv)
    env.pop("BRIDGE_ACTION_TOKEN", None)
    if token is not None:
        env["BRIDGE_ACTION_TOKEN"] = token
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", READ, str(endpoints)],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def test_rasa_36_sends_the_unquoted_token_as_a_query_parameter(
    rasa_venv: Path, tmp_path: Path
) -> None:
    token = "t" * 32
    for shipped in ("endpoints.yml", "deploy/endpoints.yml"):
        assert _rasa_reads(rasa_venv, REPO / shipped, token) == f"params {{'token': '{token}'}}"
    assert _rasa_reads(rasa_venv, REPO / "endpoints.yml", None) == "refused RasaException"
    quoted = tmp_path / "endpoints.yml"
    quoted.write_text(
        'action_endpoint:\n  url: "http://x/webhook"\n  token: "${BRIDGE_ACTION_TOKEN}"\n'
    )
    assert _rasa_reads(rasa_venv, quoted, token) == "params {'token': '${BRIDGE_ACTION_TOKEN}'}"
