"""Strategies and cooldown (SPEC section 6), seen from outside: which target answered each request."""
from __future__ import annotations

import asyncio
from collections import Counter

from gateway.clock import ManualClock
from tests.conftest import MASTER, check_error
from tests.fakes import Behaviour, openai_text

HELLO = [{"role": "user", "content": "hi"}]


def route(url: str, strategy: str, targets: list[str], retries: int = 1, timeout: float = 1.0) -> str:
    """One route `r` over targets on the fake upstream (`up`, `up2`) or the mock providers."""
    lines = "\n".join(f"      - {t}" for t in targets)
    return f"""
settings:
  limits: {{max_rpm: 1000, max_tpm: 100000}}
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: upstream-secret-key-123}}
  up2: {{dialect: openai, base_url: "{url}/v1", api_key: upstream-secret-key-123}}
  fast: {{dialect: mock, chunk_delay_ms: 1}}
  slow: {{dialect: mock, chunk_delay_ms: 120}}
routes:
  r:
    strategy: {strategy}
    retries: {retries}
    timeout: {timeout}
    targets:
{lines}
"""


async def gateway_for(start_gateway, upstream, strategy, targets, clock=None, **kwargs):
    gw = await start_gateway(routes_yaml=route(upstream.url, strategy, targets, **kwargs), clock=clock)
    key = (await gw.create_key(rpm=1000, tpm=100000))["key"]
    return gw, key


async def served_by(gw, key, stream: bool = False) -> str:
    """The upstream model that answered one request."""
    resp = await gw.post(key, {"model": "r", "messages": HELLO, "stream": stream})
    assert resp.status == 200, await resp.text()
    await resp.read()
    return resp.headers["x-gateway-model"]


THREE = ["{provider: up, model: m1}", "{provider: up, model: m2}", "{provider: up, model: m3}"]


async def test_fallback_goes_in_order_and_reaches_the_second_target(start_gateway, upstream):
    gw, key = await gateway_for(start_gateway, upstream, "fallback", THREE[:2])
    assert [await served_by(gw, key) for _ in range(3)] == ["m1"] * 3
    upstream.queue(Behaviour(status=500))
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-gateway-model"] == "m2"
    assert resp.headers["x-gateway-attempts"] == "2"
    assert [r["model"] for r in upstream.requests[-2:]] == ["m1", "m2"]


async def test_retries_wrap_around_the_targets(start_gateway, upstream):
    gw, key = await gateway_for(start_gateway, upstream, "fallback", THREE[:2], retries=3)
    upstream.queue(*[Behaviour(status=503)] * 3)
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    assert resp.status == 200 and resp.headers["x-gateway-attempts"] == "4"
    assert [r["model"] for r in upstream.requests] == ["m1", "m2", "m1", "m2"]


async def test_round_robin_alternates(start_gateway, upstream):
    gw, key = await gateway_for(start_gateway, upstream, "round_robin", THREE)
    picks = [await served_by(gw, key, stream=n % 2 == 1) for n in range(6)]
    assert picks == ["m1", "m2", "m3", "m1", "m2", "m3"]
    upstream.queue(Behaviour(status=500))                  # a retry moves on to the next in turn
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    assert resp.headers["x-gateway-model"] == "m2"
    assert [r["model"] for r in upstream.requests[-2:]] == ["m1", "m2"]


async def test_weighted_follows_the_weights(start_gateway, upstream):
    targets = ["{provider: fast, model: heavy, weight: 3}", "{provider: fast, model: light, weight: 1}"]
    gw, key = await gateway_for(start_gateway, upstream, "weighted", targets)
    picks: Counter = Counter()
    for _ in range(8):
        picks.update(await asyncio.gather(*[served_by(gw, key) for _ in range(50)]))
    # 400 picks at p = 0.75: mean 300, sd 8.7; +-40 is over 4.5 sd
    assert picks["heavy"] + picks["light"] == 400
    assert 260 <= picks["heavy"] <= 340, picks


async def test_least_latency_prefers_the_faster_target_after_warm_up(start_gateway, upstream):
    targets = ["{provider: slow, model: chat}", "{provider: fast, model: chat}"]
    gw, key = await gateway_for(start_gateway, upstream, "least_latency", targets)
    picks = []
    for n in range(7):
        resp = await gw.post(key, {"model": "r", "messages": HELLO, "stream": n % 2 == 1})
        await resp.read()
        picks.append(resp.headers["x-gateway-provider"])
    assert picks[:2] == ["slow", "fast"]           # each target measured once
    assert picks[2:] == ["fast"] * 5


async def test_least_latency_on_real_upstreams(start_gateway, upstream):
    gw, key = await gateway_for(start_gateway, upstream, "least_latency", THREE[:2])
    upstream.queue(Behaviour(hang=0.15, json=openai_text(model="m1")))   # m1 is slow the one time it is measured
    picks = [await served_by(gw, key) for _ in range(5)]
    assert picks == ["m1", "m2", "m2", "m2", "m2"]


async def test_cheapest_picks_the_lowest_price(start_gateway, upstream):
    targets = ["{provider: up, model: dear, price: {input: 5, output: 15}}",
               "{provider: up, model: cheap, price: {input: 0.1, output: 0.4}}",
               "{provider: up, model: middle, price: {input: 1, output: 2}}"]
    gw, key = await gateway_for(start_gateway, upstream, "cheapest", targets)
    assert [await served_by(gw, key) for _ in range(3)] == ["cheap"] * 3
    upstream.queue(Behaviour(status=500))                  # the retry goes to the next cheapest
    assert await served_by(gw, key) == "middle"
    assert [r["model"] for r in upstream.requests[-2:]] == ["cheap", "middle"]


# -- cooldown ------------------------------------------------------------------------------------

async def fail_first_target(gw, key, upstream, times: int) -> None:
    """Each request: m1 fails, the retry on m2 answers."""
    for _ in range(times):
        upstream.queue(Behaviour(status=500))
        resp = await gw.post(key, {"model": "r", "messages": HELLO})
        assert resp.status == 200 and resp.headers["x-gateway-model"] == "m2"


async def test_a_cooled_down_target_is_skipped_then_probed_again(start_gateway, upstream):
    clock = ManualClock()
    gw, key = await gateway_for(start_gateway, upstream, "fallback", THREE[:2], clock=clock)
    await fail_first_target(gw, key, upstream, 3)       # three failures in a row: m1 cools down
    before = len(upstream.requests)
    resp = await gw.post(key, {"model": "r", "messages": HELLO})
    assert resp.headers["x-gateway-model"] == "m2" and resp.headers["x-gateway-attempts"] == "1"
    assert [r["model"] for r in upstream.requests[before:]] == ["m2"]
    clock.advance(6)                                    # the cooldown is over: m1 is probed
    upstream.queue(Behaviour(status=500))               # and fails again: a longer cooldown (10 s)
    assert await served_by(gw, key) == "m2"
    clock.advance(6)
    assert await served_by(gw, key) == "m2" and upstream.requests[-1]["model"] == "m2"
    clock.advance(5)
    assert await served_by(gw, key) == "m1"              # probed, healthy again
    assert await served_by(gw, key) == "m1"


async def test_a_success_resets_the_failure_count(start_gateway, upstream):
    gw, key = await gateway_for(start_gateway, upstream, "fallback", THREE[:2], clock=ManualClock())
    await fail_first_target(gw, key, upstream, 2)
    assert await served_by(gw, key) == "m1"
    await fail_first_target(gw, key, upstream, 2)
    assert await served_by(gw, key) == "m1"


async def test_client_errors_do_not_cool_a_target_down(start_gateway, upstream):
    gw, key = await gateway_for(start_gateway, upstream, "fallback", THREE[:2], clock=ManualClock())
    for _ in range(4):
        upstream.queue(Behaviour(status=400))
        resp = await gw.post(key, {"model": "r", "messages": HELLO})
        assert resp.status == 400
    assert await served_by(gw, key) == "m1"
    async with gw.http.get(f"{gw.url}/admin/routes", headers={"Authorization": f"Bearer {MASTER}"}) as resp:
        m1 = (await resp.json())["data"][0]["targets"][0]
    assert m1["requests"] == 5 and m1["errors"] == 0 and not m1["cooling"]


async def test_when_all_targets_cool_one_is_still_tried(start_gateway, upstream):
    clock = ManualClock()
    gw, key = await gateway_for(start_gateway, upstream, "fallback", THREE[:2], clock=clock, retries=0)
    for model in ("m1", "m2"):                   # m1 fails three times and cools; a second later m2 does
        for _ in range(3):
            upstream.queue(Behaviour(status=500))
            resp = await gw.post(key, {"model": "r", "messages": HELLO})
            check_error(await resp.json(), "upstream_error")
            assert resp.status == 502 and upstream.requests[-1]["model"] == model
        clock.advance(1)
    # both cooling: cooldown alone never refuses, and the least recently failed (m1) is tried
    assert await served_by(gw, key) == "m1"
