"""The Redis limiter's own behaviour (gateway/limiter/redis.py): state shared through Redis,
rebuilt from the ledger once when Redis is empty, and what happens while Redis is away.

The behaviour both limiters share (windows, budgets, headers) is pinned by tests/test_limits.py,
which runs against each. Tests here use REDIS_TEST_URL (db 13, flushed; db 14 on the second xdist
worker), except the outage tests, which start their own `redis-server` on a free port so they can stop it.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
import redis

from gateway.clock import ManualClock
from tests.conftest import MASTER, check_error
from tests.procs import free_port
from tests.waits import until

ROUTES = """
settings:
  limiter_fallback: %(fallback)s
providers:
  demo: {dialect: mock}
routes:
  demo:
    targets: [{provider: demo, model: chat, price: {input: 1000, output: 1000}}]
"""
HI = [{"role": "user", "content": "hi"}]     # 8 prompt tokens, 21 answer tokens: $0.029 a request


async def ask(gw, key: str):
    resp = await gw.post(key, {"model": "demo", "messages": HI})
    return resp.status, await resp.json(), resp.headers


async def usage(gw, key_id: str) -> dict:
    async with gw.http.get(f"{gw.url}/admin/keys/{key_id}", headers={"Authorization": f"Bearer {MASTER}"}) as r:
        assert r.status == 200
        return await r.json()


class OwnRedis:
    """A redis-server of this test's own, on a free port, that it may stop and start again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                client.close()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis():
    if shutil.which("redis-server") is None:
        pytest.skip("NO redis-server BINARY on PATH: the Redis outage tests did not run")
    server = OwnRedis()
    server.start()
    yield server
    server.stop()


async def until_status(gw, key: str, want: int, seconds: float = 5.0) -> float:
    """Seconds until a request answers `want` (the limiter probes Redis every half second)."""
    async def answers() -> bool:
        return (await ask(gw, key))[0] == want
    return await until(answers, within=seconds, every=0.1, what=f"no {want} within {seconds}s")


async def test_two_gateways_on_one_redis_share_windows_and_spend(start_gateway, redis_url):
    clock = ManualClock()
    gw1 = await start_gateway(ROUTES % {"fallback": "refuse"}, clock=clock, limiter_url=redis_url)
    gw2 = await start_gateway(ROUTES % {"fallback": "refuse"}, clock=clock, limiter_url=redis_url)
    key = await gw1.create_key(rpm=4, max_budget=1)
    await asyncio.sleep(1.2)                       # gw2 picks the new key up by polling the database
    statuses = [(await ask(gw, key["key"]))[0] for gw in (gw1, gw2, gw1, gw2, gw1, gw2)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    for gw in (gw1, gw2):                          # either process reports what Redis counted
        shown = await usage(gw, key["id"])
        assert shown["rpm_used"] == 4 and shown["tpm_used"] == 4 * 29
        assert shown["spend_total"] == pytest.approx(4 * 0.029)


async def test_retry_after_never_exceeds_the_window_when_clocks_disagree(start_gateway, redis_url):
    """A booking made with a later clock (another machine's, or a request that read the clock first and
    reached Redis last) leaves the window more than 60 s after this request's `now`: Retry-After once said
    61 (test_limits' 150 concurrent requests, under load) or more; the window is 60 s, so is the longest wait."""
    behind = ManualClock()
    ahead = ManualClock(behind.now() + 2.5)
    gw_ahead = await start_gateway(ROUTES % {"fallback": "refuse"}, clock=ahead, limiter_url=redis_url)
    gw_behind = await start_gateway(ROUTES % {"fallback": "refuse"}, clock=behind, limiter_url=redis_url)
    key = await gw_ahead.create_key(rpm=1, max_budget=1)
    assert (await ask(gw_ahead, key["key"]))[0] == 200
    answers = []

    async def known() -> bool:       # 401 until gw_behind's key poll (every second) has seen the new key
        answers.append(await ask(gw_behind, key["key"]))
        return answers[-1][0] != 401
    await until(known, within=5, every=0.1, what="the key never reached the other gateway")
    status, body, headers = answers[-1]
    assert status == 429 and check_error(body, "rate_limit_exceeded")
    assert headers["Retry-After"] == "60" and "retry in 60s" in body["error"]["message"]
    assert headers["x-ratelimit-reset-requests"] == "1m0s"


async def test_empty_redis_is_rebuilt_from_the_ledger_once_by_several_gateways(start_gateway, redis_url):
    clock = ManualClock()
    first = await start_gateway(ROUTES % {"fallback": "refuse"}, clock=clock)     # memory limits
    key = await first.create_key(rpm=5, max_budget=1)
    for _ in range(3):
        assert (await ask(first, key["key"]))[0] == 200
    await first.rows()
    clock.advance(10)
    # Redis has nothing yet: three gateways start at once, the ledger is counted once, not thrice
    gws = await asyncio.gather(*(start_gateway(ROUTES % {"fallback": "refuse"}, clock=clock, limiter_url=redis_url)
                                 for _ in range(3)))
    shown = await usage(gws[0], key["id"])
    assert shown["rpm_used"] == 3 and shown["spend_total"] == pytest.approx(3 * 0.029)
    statuses = [(await ask(gws[i % 3], key["key"]))[0] for i in range(3)]
    assert statuses == [200, 200, 429]
    status, _, headers = await ask(gws[0], key["key"])
    assert status == 429 and headers["Retry-After"] == "50"    # the ledger's first request, at t=0, leaves at 60
    assert redis.Redis.from_url(redis_url).get("gw:epoch") is not None


async def test_redis_away_refuses_with_503_then_recovers_by_itself(start_gateway, own_redis):
    clock = ManualClock()
    gw = await start_gateway(ROUTES % {"fallback": "refuse"}, clock=clock, limiter_url=own_redis.url)
    key = await gw.create_key(rpm=3)
    assert (await ask(gw, key["key"]))[0] == 200
    own_redis.stop()
    began = time.monotonic()
    status, body, headers = await ask(gw, key["key"])
    assert time.monotonic() - began < 2.5                     # a refused connection, not a hang
    assert status == 503 and check_error(body, "limiter_unavailable")["type"] == "api_error"
    assert headers["Retry-After"] == "1"
    assert (await ask(gw, key["key"]))[0] == 503
    own_redis.start()                                         # empty: no epoch, no scripts
    await until_status(gw, key["key"], 200)
    # the window was rebuilt from the ledger: the first request still counts, the 503s do not
    assert [(await ask(gw, key["key"]))[0] for _ in range(2)] == [200, 429]
    rows = await gw.rows("SELECT status, error_code FROM requests ORDER BY id")
    refused = [r["status"] for r in rows if r["error_code"] == "limiter_unavailable"]
    assert len(refused) >= 2 and set(refused) == {"rejected"}
    async with gw.http.get(f"{gw.url}/metrics") as resp:
        text = await resp.text()
    assert "gateway_limiter_up 1.0" in text and "gateway_limiter_failures" in text


async def test_fallback_memory_admits_on_own_counters_and_redis_takes_over_again(start_gateway, own_redis):
    clock = ManualClock()
    gw = await start_gateway(ROUTES % {"fallback": "memory"}, clock=clock, limiter_url=own_redis.url)
    key = await gw.create_key(rpm=3)
    own_redis.stop()
    statuses = [(await ask(gw, key["key"]))[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]                   # this process's own counters still limit
    async with gw.http.get(f"{gw.url}/metrics") as resp:
        assert "gateway_limiter_up 0.0" in await resp.text()
    own_redis.start()
    await asyncio.sleep(1.5)                                  # the probe finds it, rebuilds from the ledger
    status, _, headers = await ask(gw, key["key"])
    assert status == 429 and "x-ratelimit-remaining-requests" in headers
    assert (await usage(gw, key["id"]))["rpm_used"] == 3


async def test_a_redis_url_never_reaches_a_log_line_with_its_password(start_gateway, own_redis, caplog):
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"     # nothing listens: the start logs the failure
    gw = await start_gateway(ROUTES % {"fallback": "refuse"}, limiter_url=url)
    key = await gw.create_key()
    assert (await ask(gw, key["key"]))[0] == 503
    assert "limiter" in caplog.text and "hunter2" not in caplog.text


@pytest.mark.parametrize("value, ok", [("memory", True), ("redis://127.0.0.1:6379/0", True),
                                       ("rediss://:pw@cache.internal:6380/2", True), ("unix:///run/redis.sock", True),
                                       ("redis", False), ("mysql://db/x", False), ("redis://", False),
                                       ("redis://h:port/0", False), ("redis://h:6379/0?socket_timeout=soon", False)])
def test_settings_limiter_takes_memory_or_a_redis_url_and_names_its_path(value, ok):
    from gateway.config import ConfigError, parse_config

    text = f"settings:\n  limiter: '{value}'\n"
    if ok:
        assert parse_config(text).settings.limiter == value
        return
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert err.value.problems == ["settings.limiter: must be 'memory' or a Redis URL such as redis://127.0.0.1:6379/0"]
