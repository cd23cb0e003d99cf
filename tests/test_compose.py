"""docker-compose.yml and the Dockerfile stay consistent with the code (no Docker engine runs
here, so this is what can be checked: images, ports, settings names, files and volumes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def test_the_four_services_and_their_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "rasa", "bridge", "simulator"}
    assert services["redis"]["image"].startswith("redis:")
    assert re.fullmatch(r"rasa/rasa:3\.6\.\d+(-full)?", services["rasa"]["image"])
    assert services["bridge"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert services["simulator"]["profiles"] == ["simulator"]


def test_every_bridge_and_simulator_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = {name.upper() for name in Settings.model_fields}
    for name in ("bridge", "simulator"):
        unknown = set(_env(compose["services"][name])) - known
        assert not unknown, f"{name} sets variables the bridge does not read: {unknown}"


def test_ports_are_distinct_and_match_the_defaults(compose: dict[str, Any]) -> None:
    published = [p.split(":")[0] for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(published) == len(set(published))
    assert "5055:5055" in compose["services"]["bridge"]["ports"]
    assert _env(compose["services"]["bridge"])["BRIDGE_PORT"] == str(
        Settings.model_fields["bridge_port"].default
    )
    assert "EXPOSE 5055" in (ROOT / "Dockerfile").read_text()


def test_services_reach_each_other_by_name(compose: dict[str, Any]) -> None:
    services = compose["services"]
    bridge = _env(services["bridge"])
    assert bridge["REDIS_URL"].startswith("redis://redis:")
    assert bridge["RASA_URL"] == "http://rasa:5005"
    sim_cmd = services["simulator"]["command"]
    assert "http://bridge:5055/8x8/events" in sim_cmd
    endpoints_file = services["rasa"]["command"][
        services["rasa"]["command"].index("--endpoints") + 1
    ]
    endpoints = yaml.safe_load((ROOT / endpoints_file).read_text())
    assert endpoints["action_endpoint"]["url"] == "http://bridge:5055/webhook"


def test_rasa_gets_the_project_and_the_policy_module(compose: dict[str, Any]) -> None:
    rasa = compose["services"]["rasa"]
    assert "./:/app" in rasa["volumes"] and rasa["working_dir"] == "/app"
    assert _env(rasa)["PYTHONPATH"] == "/app" and (ROOT / "handoff_policy.py").is_file()
    cmd = rasa["command"]
    assert cmd[0] == "run" and "--enable-api" in cmd
    for flag in ("--credentials", "--endpoints"):
        assert (ROOT / cmd[cmd.index(flag) + 1]).is_file()


def test_bind_mounts_exist_in_the_repo(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), source
            else:
                assert source in named, f"undeclared named volume {source}"


def test_the_image_runs_serve_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["handoff-bridge", "serve"]' in dockerfile
    assert "/health" in dockerfile
    for copied in re.findall(r"^COPY (\S+)", dockerfile, re.M):
        assert (ROOT / copied).exists(), copied


def test_only_the_bridge_is_published_and_rasa_has_no_default_secret(
    compose: dict[str, Any],
) -> None:
    rasa = compose["services"]["rasa"]
    assert "ports" not in rasa  # Rasa's API stays inside the compose network
    assert "--cors" not in rasa["command"]
    token = rasa["command"][rasa["command"].index("--auth-token") + 1]
    assert token.startswith("${RASA_TOKEN:?")  # no default: compose refuses to start without
    for name in ("rasa", "bridge"):
        assert _env(compose["services"][name])["BRIDGE_ACTION_TOKEN"].startswith(
            "${BRIDGE_ACTION_TOKEN:?"
        )


@pytest.mark.parametrize("path", ["endpoints.yml", "deploy/endpoints.yml"])
def test_endpoints_send_the_action_token_unquoted(path: str) -> None:
    # Rasa 3.6 expands ${VAR} only in plain scalars (rasa/shared/utils/io.py registers an
    # implicit resolver); a quoted "${VAR}" would be sent as those very characters.
    text = (ROOT / path).read_text()
    assert re.search(r"^  token: \$\{BRIDGE_ACTION_TOKEN\}$", text, re.M), text
    assert yaml.safe_load(text)["action_endpoint"]["token"] == "${BRIDGE_ACTION_TOKEN}"


def test_the_prometheus_example_scrapes_with_the_token() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    assert job["static_configs"][0]["targets"] == ["bridge:5055"]
