"""Hot reload of routes.yaml (SPEC section 3 and 6): edits apply without restart, broken ones never."""
from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from tests.conftest import check_error
from tests.fakes import Behaviour
from tests.waits import until

HELLO = [{"role": "user", "content": "hi"}]


def config(url: str, model: str = "m-old", extra_route: str = "") -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: upstream-secret-key-123}}
  demo: {{dialect: mock}}
routes:
  r:
    retries: 1
    timeout: 2
    targets: [{{provider: up, model: {model}}}]
{extra_route}"""


FRESH = "  fresh: {targets: [{provider: demo, model: echo}]}\n"


async def running(start_gateway, upstream, tmp_path, **options):
    path = tmp_path / "routes.yaml"
    gw = await start_gateway(routes_yaml=config(upstream.url), config_path=path,
                             config_poll_interval=options.pop("poll", 0.05), **options)
    return gw, (await gw.create_key())["key"], path


async def status_of(gw, key, model: str) -> int:
    resp = await gw.post(key, {"model": model, "messages": HELLO})
    await resp.read()
    return resp.status


async def test_an_edit_takes_effect_without_restart(start_gateway, upstream, tmp_path):
    gw, key, path = await running(start_gateway, upstream, tmp_path)
    assert await status_of(gw, key, "fresh") == 404
    path.write_text(config(upstream.url, model="m-new", extra_route=FRESH))

    async def fresh_answers() -> bool:
        return await status_of(gw, key, "fresh") == 200

    assert await until(fresh_answers) < 1.0
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-gateway-model"] == "m-new"


BROKEN = {
    "bad-value": ("  r:\n    timeout: -1\n    targets: [{provider: up, model: m}]\n", "routes.r.timeout"),
    "missing-provider": ("  r:\n    targets: [{provider: nope, model: m}]\n", "routes.r.targets[0].provider"),
    "unknown-key": ("  r:\n    retires: 2\n    targets: [{provider: up, model: m}]\n", "routes.r.retires"),
    "unset-env": ("  r:\n    targets: [{provider: up, model: '${NO_SUCH_VAR_FOR_TEST}'}]\n",
                  "routes.r.targets[0].model"),
    "yaml-syntax": ("  r: {targets: [\n", "(yaml)"),
}


@pytest.mark.parametrize("name", list(BROKEN))
async def test_a_broken_edit_is_refused_and_the_old_config_serves(start_gateway, upstream, tmp_path, caplog, name):
    caplog.set_level(logging.INFO, logger="gateway.ops.watch")
    gw, key, path = await running(start_gateway, upstream, tmp_path)
    routes, yaml_path = BROKEN[name]
    head = config(upstream.url).split("routes:")[0]
    path.write_text(f"{head}routes:\n{routes}")

    async def refused() -> bool:
        return any(yaml_path in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)

    await until(refused)
    assert str(path) in caplog.text and "old config stays" in caplog.text
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-gateway-model"] == "m-old"
    path.write_text(config(upstream.url, extra_route=FRESH))     # the watcher lives on: a good edit applies

    async def fresh_answers() -> bool:
        return await status_of(gw, key, "fresh") == 200

    await until(fresh_answers)


@pytest.mark.parametrize("damage", ["not-utf8", "deleted"])
async def test_an_unreadable_file_is_refused(start_gateway, upstream, tmp_path, caplog, damage):
    caplog.set_level(logging.INFO, logger="gateway.ops.watch")
    gw, key, path = await running(start_gateway, upstream, tmp_path)
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"routes:\n  r: \xff\xfe\n")

    async def refused() -> bool:
        return any("refused" in r.getMessage() for r in caplog.records)

    await until(refused)
    assert await status_of(gw, key, "r") == 200
    path.write_text(config(upstream.url, extra_route=FRESH))

    async def fresh_answers() -> bool:
        return await status_of(gw, key, "fresh") == 200

    await until(fresh_answers)


async def test_in_flight_requests_finish_on_the_config_they_started_with(start_gateway, upstream, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gateway.ops.watch")
    gw, key, path = await running(start_gateway, upstream, tmp_path)
    upstream.queue(Behaviour(status=500, hang=0.5))      # the first attempt is slow, then fails: a retry follows
    pending = asyncio.create_task(gw.post(key, {"model": "r", "messages": HELLO}))
    await until(lambda: len(upstream.requests) == 1)
    path.write_text(config(upstream.url, model="m-new"))

    async def reloaded() -> bool:
        return "config reloaded" in caplog.text

    await until(reloaded)
    assert not pending.done()
    resp = await pending
    assert resp.status == 200 and resp.headers["x-gateway-model"] == "m-old"
    assert resp.headers["x-gateway-attempts"] == "2"
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    assert resp.headers["x-gateway-model"] == "m-new"
    assert [r["model"] for r in upstream.requests] == ["m-old", "m-old", "m-new"]


async def test_sighup_reloads_at_once(start_gateway, upstream, tmp_path):
    gw, key, path = await running(start_gateway, upstream, tmp_path, poll=3600)
    if signal.getsignal(signal.SIGHUP) in (signal.SIG_DFL, signal.SIG_IGN, None):
        pytest.fail("the gateway did not take SIGHUP; sending it would end the test process")
    path.write_text(config(upstream.url, extra_route=FRESH))
    await asyncio.sleep(0.05)
    assert await status_of(gw, key, "fresh") == 404               # polling is off: nothing yet
    os.kill(os.getpid(), signal.SIGHUP)

    async def fresh_answers() -> bool:
        return await status_of(gw, key, "fresh") == 200

    assert await until(fresh_answers, within=1.0) < 0.5


async def test_unknown_model_after_a_route_was_removed(start_gateway, upstream, tmp_path):
    gw, key, path = await running(start_gateway, upstream, tmp_path)
    path.write_text(config(upstream.url).replace("  r:\n", "  renamed:\n"))

    async def gone() -> bool:
        return await status_of(gw, key, "r") == 404

    await until(gone)
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    check_error(await resp.json(), "model_not_found")
