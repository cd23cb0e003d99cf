"""`handoff-bridge check` and `provision` against the simulator, Redis and a Rasa stand-in."""

from __future__ import annotations

from tests.ops.conftest import World, closed_port


def _lines(ran) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    return {c["check"]: c for c in ran.json()["checks"]}


async def test_check_all_ok(world: World) -> None:
    ran = await world.cli("check", "--webhook-url", f"{world.url}/8x8/events")
    assert ran.code == 0, ran.out
    for name in (
        "settings",
        "8x8 credentials",
        "8x8 channel",
        "8x8 webhook",
        "redis",
        "rasa",
        "rasa api",
    ):
        assert f"OK    {name}" in ran.out or f"OK  {name}" in ran.out, ran.out
    data = (await world.cli("check", "--json")).json()
    assert data["ok"] and all(c["ok"] for c in data["checks"])
    # the webhook check made 8x8 (the simulator) verify our live endpoint
    assert any(d.event_type == "WEB_HOOK_VERIFY" and d.ok for d in world.sim.deliveries)


async def test_check_8x8_down(world: World) -> None:
    world.sim.faults.fail_next("webhooks", count=10, status=503)
    ran = await world.cli("check", "--json")
    assert ran.code == 1
    line = _lines(ran)["8x8 credentials"]
    assert not line["ok"] and "8x8 answered 503" in line["detail"]
    unreachable = await world.cli(
        "check", "--json", EIGHTBYEIGHT_BASE_URL=f"http://127.0.0.1:{closed_port()}"
    )
    assert "cannot reach 8x8" in _lines(unreachable)["8x8 credentials"]["detail"]


async def test_check_wrong_key(world: World) -> None:
    ran = await world.cli("check", "--json", EIGHTBYEIGHT_API_KEY="wrong")
    assert ran.code == 1
    detail = _lines(ran)["8x8 credentials"]["detail"]
    assert "refused the credentials" in detail and "wrong" not in detail  # never the value


async def test_check_missing_channel_and_foreign_webhook(world: World) -> None:
    ran = await world.cli("check", "--json", EIGHTBYEIGHT_CHANNEL_ID="nope")
    assert "does not exist" in _lines(ran)["8x8 channel"]["detail"]
    ran = await world.cli(
        "check", "--json", "--webhook-url", "https://elsewhere.example/8x8/events"
    )
    assert "not at https://elsewhere.example" in _lines(ran)["8x8 webhook"]["detail"]
    world.sim.set_webhook_url(f"http://127.0.0.1:{closed_port()}/8x8/events")
    ran = await world.cli("check", "--json")
    assert ran.code == 1
    assert "did not pass 8x8's verification" in _lines(ran)["8x8 webhook"]["detail"]


async def test_check_redis_down_and_rasa_problems(world: World) -> None:
    ran = await world.cli(
        "check", "--json", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", RASA_TOKEN="bad"
    )
    assert ran.code == 1
    lines = _lines(ran)
    assert "cannot reach Redis" in lines["redis"]["detail"]
    assert lines["rasa"]["ok"]  # /version needs no token
    assert "refused RASA_TOKEN" in lines["rasa api"]["detail"]
    ran = await world.cli("check", "--json", RASA_URL=f"http://127.0.0.1:{closed_port()}")
    assert "cannot reach Rasa" in _lines(ran)["rasa"]["detail"]


async def test_check_invalid_settings(world: World) -> None:
    world.monkeypatch.delenv("EIGHTBYEIGHT_API_KEY", raising=False)
    env = {k: v for k, v in world.env.items() if k != "EIGHTBYEIGHT_API_KEY"}
    world.env = env
    ran = await world.cli("check")
    assert ran.code == 1
    assert "FAIL  settings" in ran.out and "EIGHTBYEIGHT_API_KEY: is required" in ran.out
    assert "OK    redis" in ran.out  # the rest is still checked


async def test_provision_is_idempotent_and_verifies(world: World) -> None:
    hook_url = f"{world.url}/8x8/events?tenant=new"
    first = await world.cli("provision", "--webhook-url", hook_url, "--queue", "202", "--json")
    assert first.code == 0, first.err
    made = first.json()
    assert made["webhook"]["created"] and made["channel"]["created"]
    assert made["settings"]["EIGHTBYEIGHT_CHANNEL_ID"] == made["channel"]["id"]
    again = await world.cli("provision", "--webhook-url", hook_url, "--queue", "202", "--json")
    found = again.json()
    assert not found["webhook"]["created"] and not found["channel"]["created"]
    assert (found["webhook"]["id"], found["channel"]["id"]) == (
        made["webhook"]["id"],
        made["channel"]["id"],
    )
    hooks = [h for h in world.sim.provisioning.webhooks.values() if h.uri == hook_url]
    assert len(hooks) == 1
    # the channel it made works: `check` with its settings is all OK
    ok = await world.cli("check", EIGHTBYEIGHT_CHANNEL_ID=made["channel"]["id"])
    assert ok.code == 0, ok.out
    text = await world.cli("provision", "--webhook-url", hook_url)
    assert f"EIGHTBYEIGHT_CHANNEL_ID={made['channel']['id']}" in text.out


async def test_provision_errors(world: World) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/8x8/events"
    ran = await world.cli("provision", "--webhook-url", dead, "--queue", "202")
    assert ran.code == 5 and "error:" in ran.err  # 8x8 refuses a webhook that does not verify
    ran = await world.cli("provision", "--webhook-url", f"{world.url}/8x8/events?x=1")
    assert ran.code == 2 and "--queue" in ran.err  # no channel yet and no queue to make one on
    ran = await world.cli("provision", "--webhook-url", dead, EIGHTBYEIGHT_API_KEY="wrong")
    assert ran.code == 5
    world.sim.faults.fail_next("webhooks", count=10, status=503)
    ran = await world.cli("provision", "--webhook-url", dead)
    assert ran.code == 5 and "503" in ran.err


async def test_check_rasa_without_a_model(world: World) -> None:
    world.rasa.model_loaded = False  # what a real Rasa 3.6 answers when started without a model
    ran = await world.cli("check", "--json")
    assert ran.code == 1
    assert "no trained model" in _lines(ran)["rasa api"]["detail"]
