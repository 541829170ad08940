"""Per-key limits against a running gateway (SPEC section 7): RPM, TPM, budgets, rate-limit headers.

Time is a ManualClock, so windows and budget periods move by `clock.advance` instead of sleeping.
The built-in mock answers offline: a prompt of "hi" is 8 tokens, its answer 21 (29 in all).
"""
from __future__ import annotations

import asyncio
import functools
import json
from datetime import UTC, datetime

import pytest

from gateway.clock import ManualClock
from tests.conftest import BOTH_DBS, MASTER, check_error, parse_sse

# USD per 1M tokens: 1000/1000 makes every token cost $0.001, so budgets are easy to reason about.
ROUTES = """
providers:
  demo: {dialect: mock}
  slow: {dialect: mock, chunk_delay_ms: 40}
routes:
  demo:
    targets: [{provider: demo, model: chat, price: {input: 1.0, output: 1.0}}]
  pricey:
    targets: [{provider: demo, model: chat, price: {input: 1000, output: 1000}}]
  pricey-slow:
    targets: [{provider: slow, model: chat, price: {input: 1000, output: 1000}}]
"""
HI = [{"role": "user", "content": "hi"}]
PROMPT, ANSWER = 8, 21


@pytest.fixture
def start_gateway(start_gateway, limiter_url):
    """Every test here runs against both limiters, memory and Redis, so their behaviour cannot drift."""
    return functools.partial(start_gateway, limiter_url=limiter_url)


def at(text: str) -> ManualClock:
    return ManualClock(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


async def spent(gw, key_id: str) -> float:
    """The key's spend as SQL sums it in the ledger (SQLite or PostgreSQL)."""
    rows = await gw.rows("SELECT COALESCE(SUM(cost_usd), 0) AS usd FROM requests WHERE key_id = ?", (key_id,))
    return rows[0]["usd"]


async def ask(gw, key: str, model: str = "demo", **extra):
    resp = await gw.post(key, {"model": model, "messages": HI, **extra})
    body = await resp.read()
    return resp, body


@BOTH_DBS
async def test_150_concurrent_requests_on_rpm_100_admit_exactly_100(start_gateway):
    gw = await start_gateway(ROUTES)
    key = await gw.create_key(rpm=100, tpm=100_000)
    results = await asyncio.gather(*(ask(gw, key["key"]) for _ in range(150)))
    statuses = [resp.status for resp, _ in results]
    assert statuses.count(200) == 100 and statuses.count(429) == 50
    for resp, body in results:
        if resp.status == 429:
            error = check_error(json.loads(body), "rate_limit_exceeded")
            assert error["type"] == "rate_limit_error"
            assert 1 <= int(resp.headers["Retry-After"]) <= 60
            assert resp.headers["x-ratelimit-remaining-requests"] == "0"
    rows = await gw.rows("SELECT status, COUNT(*) AS n FROM requests GROUP BY status ORDER BY status")
    assert rows == [{"status": "ok", "n": 100}, {"status": "rejected", "n": 50}]


async def test_rpm_window_slides_instead_of_resetting_each_minute(start_gateway):
    clock = at("2024-05-10T12:00:50")
    gw = await start_gateway(ROUTES, clock=clock)
    key = (await gw.create_key(rpm=3))["key"]
    for step in (0, 10, 10):                     # admitted at :50, 1:00, 1:10
        clock.advance(step)
        assert (await ask(gw, key))[0].status == 200
    clock.advance(20)                            # 1:30, a new clock minute: a fixed bucket would admit
    resp, _ = await ask(gw, key)
    assert resp.status == 429 and resp.headers["Retry-After"] == "20"    # the :50 request leaves at 1:50
    clock.advance(19)
    assert (await ask(gw, key))[0].headers["Retry-After"] == "1"
    clock.advance(1)
    assert (await ask(gw, key))[0].status == 200
    resp, _ = await ask(gw, key)
    assert resp.status == 429 and resp.headers["Retry-After"] == "10"    # next out: the 1:00 request, at 2:00


async def test_tpm_window_refuses_with_true_retry_after_and_readmits(start_gateway):
    clock = at("2024-05-10T12:00:00")
    gw = await start_gateway(ROUTES, clock=clock)
    key = (await gw.create_key(tpm=60))["key"]
    assert (await ask(gw, key))[0].status == 200          # 29 tokens booked at t=0
    clock.advance(20)
    assert (await ask(gw, key))[0].status == 200          # 29 more at t=20: 58 of 60 used
    clock.advance(5)
    resp, body = await ask(gw, key)                        # needs 8 more; room only when t=0's 29 leave, at t=60
    error = check_error(json.loads(body), "rate_limit_exceeded")
    assert resp.status == 429 and error["type"] == "rate_limit_error"
    assert abs(int(resp.headers["Retry-After"]) - 35) <= 1
    assert resp.headers["x-ratelimit-remaining-tokens"] == "2"
    clock.advance(34)
    resp, _ = await ask(gw, key)
    assert resp.status == 429 and resp.headers["Retry-After"] == "1"
    clock.advance(1)
    resp, _ = await ask(gw, key)
    assert resp.status == 200
    rows = await gw.rows("SELECT status, total_tokens FROM requests ORDER BY id")
    assert [r["status"] for r in rows] == ["ok", "ok", "rejected", "rejected", "ok"]
    assert [r["total_tokens"] for r in rows] == [29, 29, 0, 0, 29]


async def test_prompt_alone_over_tpm_can_never_be_admitted(start_gateway):
    gw = await start_gateway(ROUTES)
    key = (await gw.create_key(tpm=50))["key"]
    resp = await gw.post(key, {"model": "demo", "messages": [{"role": "user", "content": "word " * 60}]})
    error = check_error(await resp.json(), "request_exceeds_limit")
    assert resp.status == 429 and error["type"] == "rate_limit_error"
    assert resp.headers["x-should-retry"] == "false"
    assert (await ask(gw, key))[0].status == 200           # the refusal took nothing from the window


@BOTH_DBS
async def test_concurrent_max_tokens_requests_never_exceed_the_budget(start_gateway):
    gw = await start_gateway(ROUTES)
    key = await gw.create_key(max_budget=0.3)
    # worst case (8 + 10) * $0.001 = $0.018; without reservations all 50 in flight would spend $0.9
    results = await asyncio.gather(*(ask(gw, key["key"], "pricey-slow", max_tokens=10) for _ in range(50)))
    statuses = [resp.status for resp, _ in results]
    assert 0 < statuses.count(200) < 50 and statuses.count(200) + statuses.count(429) == 50
    for resp, body in results:
        if resp.status == 429:
            error = check_error(json.loads(body), "budget_exceeded")
            assert error["type"] == "insufficient_quota" and resp.headers["x-should-retry"] == "false"
    more = await asyncio.gather(*(ask(gw, key["key"], "pricey-slow", max_tokens=10) for _ in range(50)))
    assert {resp.status for resp, _ in more} <= {200, 429}
    await gw.rows()
    total = await spent(gw, key["id"])
    assert total <= 0.3 + 1e-9
    assert total > 0.3 - 0.018 - 1e-9                      # the budget was used, not refused early


@BOTH_DBS
async def test_budget_settles_to_real_cost_not_the_worst_case(start_gateway):
    gw = await start_gateway(ROUTES)
    key = await gw.create_key(max_budget=0.1)
    # worst case (8 + 100) * $0.001 = $0.108 > $0.1: refused; the real cost would have been $0.029
    resp, body = await ask(gw, key["key"], "pricey", max_tokens=100)
    assert resp.status == 429 and check_error(json.loads(body), "budget_exceeded")
    for _ in range(3):          # worst $0.038 each, real $0.029: booking worst cases would refuse the third
        assert (await ask(gw, key["key"], "pricey", max_tokens=30))[0].status == 200
    resp, _ = await ask(gw, key["key"], "pricey", max_tokens=30)
    assert resp.status == 429                            # $0.087 spent + $0.038 > $0.1
    await gw.rows()
    assert await spent(gw, key["id"]) == pytest.approx(0.087)


@pytest.mark.parametrize("period, start, advance, readmitted", [
    ("daily", "2024-05-10T23:59:00", 61, True),
    ("daily", "2024-05-10T00:00:30", 3600, False),
    ("monthly", "2024-01-31T23:59:00", 61, True),
    ("monthly", "2024-02-01T00:00:00", 20 * 86400, False),
    ("never", "2024-01-31T23:59:00", 40 * 86400, False),
])
async def test_budget_period_rolls_over_at_utc_boundaries(start_gateway, period, start, advance, readmitted):
    clock = at(start)
    gw = await start_gateway(ROUTES, clock=clock)
    key = await gw.create_key(max_budget=0.05, budget_period=period)
    statuses = [(await ask(gw, key["key"], "pricey", max_tokens=30))[0].status for _ in range(3)]
    assert statuses == [200, 429, 429]                   # $0.029 spent; another worst case $0.038 won't fit
    clock.advance(advance)
    assert ((await ask(gw, key["key"], "pricey", max_tokens=30))[0].status == 200) is readmitted
    async with gw.http.get(f"{gw.url}/admin/keys/{key['id']}", headers={"Authorization": f"Bearer {MASTER}"}) as r:
        shown = await r.json()
    assert shown["spend_total"] == pytest.approx(0.058 if readmitted else 0.029)
    assert shown["spend_period"] == pytest.approx(0.029)


async def test_rate_limit_headers_on_plain_and_streamed_answers(start_gateway):
    clock = at("2024-05-10T12:00:00")
    gw = await start_gateway(ROUTES, clock=clock)
    key = (await gw.create_key(rpm=10, tpm=1000))["key"]
    resp, _ = await ask(gw, key)
    assert resp.status == 200
    assert {h: resp.headers[h] for h in resp.headers if h.lower().startswith("x-ratelimit-")} == {
        "x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "1m0s", "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": str(1000 - PROMPT), "x-ratelimit-reset-tokens": "1m0s"}
    clock.advance(15)
    resp, body = await ask(gw, key, stream=True)
    assert resp.status == 200 and parse_sse(body)[-1] == "[DONE]"
    assert resp.headers["x-ratelimit-remaining-requests"] == "8"
    assert resp.headers["x-ratelimit-remaining-tokens"] == str(1000 - (PROMPT + ANSWER) - PROMPT)
    assert resp.headers["x-ratelimit-reset-requests"] == "45s"
    assert resp.headers["x-ratelimit-limit-tokens"] == "1000"


async def test_refused_requests_count_against_no_window(start_gateway):
    gw = await start_gateway(ROUTES)
    key = (await gw.create_key(rpm=2))["key"]
    assert (await gw.post(key, {"model": "demo", "messages": []})).status == 400
    assert (await gw.post(key, {"model": "nope", "messages": HI})).status == 404
    assert [(await ask(gw, key))[0].status for _ in range(3)] == [200, 200, 429]


async def test_changing_a_keys_budget_period_forgives_nothing(start_gateway):
    clock = at("2024-05-10T12:00:00")
    gw = await start_gateway(ROUTES, clock=clock)
    key = await gw.create_key(max_budget=0.05, budget_period="monthly")
    auth = {"Authorization": f"Bearer {MASTER}"}

    async def period(name: str) -> float:
        async with gw.http.patch(f"{gw.url}/admin/keys/{key['id']}", json={"budget_period": name},
                                 headers=auth) as resp:
            assert resp.status == 200
            return (await resp.json())["spend_period"]

    assert (await ask(gw, key["key"], "pricey", max_tokens=30))[0].status == 200     # $0.029 on May 10
    clock.advance(86400)
    assert (await ask(gw, key["key"], "pricey", max_tokens=30))[0].status == 429     # the month has $0.029
    assert await period("daily") == 0.0                                               # May 11 has nothing
    assert (await ask(gw, key["key"], "pricey", max_tokens=30))[0].status == 200
    assert await period("never") == pytest.approx(0.058)
    assert (await ask(gw, key["key"], "pricey", max_tokens=30))[0].status == 429
    assert await period("monthly") == pytest.approx(0.058)
    assert await period("daily") == pytest.approx(0.029)
