"""Property: a budget holds against what is actually sent upstream, for every dialect and thinking form.

The attack: `max_tokens: 10` with `thinking.budget_tokens: 4000` on a native
Anthropic target once reserved 10 output tokens while the upstream was sent
`max_tokens: 5024`; 200 concurrent requests spent 93x the budget. Here a greedy
upstream bills every output token each request allowed, and the ledger's SQL sum
must stay within the budget on every route kind, stream or not, on both limiters.
"""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import parse_config
from gateway.core.attempts import plan
from gateway.core.table import RoutingTable
from gateway.front.base import ClientRequest

BUDGET = 0.01
PRICE = "{input: 1.0, output: 1.0}"   # USD per 1M tokens: the attack's 5,024 tokens cost $0.005


def routes(url: str) -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: up-secret-key-1}}
  claude: {{dialect: anthropic, base_url: "{url}", api_key: claude-secret-key-1}}
  resp: {{dialect: openai-responses, base_url: "{url}/v1", api_key: up-secret-key-1}}
  dead: {{dialect: openai, base_url: "http://127.0.0.1:9/v1", api_key: dead-secret-key-1}}
  demo: {{dialect: mock}}
routes:
  an-native: {{targets: [{{provider: claude, model: c, price: {PRICE}, thinking: native}}]}}
  oa-native: {{targets: [{{provider: up, model: u, price: {PRICE}, thinking: native}}]}}
  oa-params:
    targets: [{{provider: up, model: u, price: {PRICE}, thinking: {{params: {{max_completion_tokens: 4000}}}}}}]
  oa-model: {{targets: [{{provider: up, model: u, price: {PRICE}, thinking: {{model: u-think}}}}]}}
  resp-native: {{targets: [{{provider: resp, model: r, price: {PRICE}, thinking: native}}]}}
  retry-reaches-claude:
    retries: 1
    targets:
      - {{provider: dead, model: d, price: {PRICE}, thinking: native}}
      - {{provider: claude, model: c, price: {PRICE}, thinking: native}}
"""


ATTACK = {"max_tokens": 10, "thinking": {"type": "enabled", "budget_tokens": 4000},
          "messages": [{"role": "user", "content": "think hard"}]}


@pytest.mark.parametrize("route", ["an-native", "oa-native", "oa-params", "oa-model", "resp-native",
                                   "retry-reaches-claude"])
@pytest.mark.parametrize("stream", [False, True])
async def test_concurrent_thinking_requests_never_pass_the_budget(start_gateway, upstream, limiter_url, route,
                                                                  stream):
    upstream.greedy = True
    gateway = await start_gateway(routes(upstream.url), limiter_url=limiter_url)
    key = (await gateway.create_key(max_budget=BUDGET, rpm=1000, tpm=100000))["key"]

    async def one() -> int:
        resp = await gateway.post(key, {**ATTACK, "model": route, "stream": stream})
        await resp.read()
        return resp.status

    statuses = await asyncio.gather(*(one() for _ in range(60)))
    assert set(statuses) <= {200, 429}, statuses
    spent = (await gateway.rows("SELECT COALESCE(SUM(cost_usd), 0) AS s FROM requests"))[0]["s"]
    assert spent <= BUDGET + 1e-9, f"{route}: spent ${spent:.5f} of a ${BUDGET} budget"
    assert statuses.count(200) >= 1, "the budget allows at least one such request"


FORMS = {"native": "native", "params": {"params": {"max_tokens": 3000}}, "model": {"model": "m-think"},
         "none": None}
BOUNDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _table(dialect: str, form) -> RoutingTable:
    providers = {"p": {"dialect": dialect, **({"base_url": "http://x"} if dialect != "mock" else {})}}
    target = {"provider": "p", "model": "m", **({"thinking": form} if form is not None else {})}
    return RoutingTable(parse_config_dict({"providers": providers, "routes": {"r": {"targets": [target]}}}))


def parse_config_dict(data: dict):
    import yaml
    return parse_config(yaml.safe_dump(data))


@settings(max_examples=200, deadline=None)
@given(dialect=st.sampled_from(["openai", "anthropic", "mock", "openai-responses"]),
       form=st.sampled_from(sorted(FORMS)),
       max_tokens=st.none() | st.integers(1, 200_000), field=st.sampled_from(["max_tokens", "max_completion_tokens"]),
       thinking=st.none() | st.just({"type": "disabled"}) | st.builds(
           lambda b: {"type": "enabled", **({"budget_tokens": b} if b else {})}, st.none() | st.integers(1, 100_000)),
       stream=st.booleans())
def test_what_is_sent_never_allows_more_output_than_the_reservation(dialect, form, max_tokens, field, thinking,
                                                                    stream):
    body = {"model": "r", "messages": [{"role": "user", "content": "hi"}]}
    if max_tokens is not None:
        body[field] = max_tokens
    if thinking is not None:
        body["thinking"] = thinking
    entry = _table(dialect, FORMS[form]).resolve("r")
    enabled = bool(thinking and thinking.get("type") == "enabled")
    candidates = entry.candidates(enabled)
    if not candidates:
        return
    for target, chosen in plan(ClientRequest(body, stream=stream, thinking=enabled), candidates).items():
        sent = chosen.request.body
        bounds = [sent[b] for b in BOUNDS if isinstance(sent.get(b), int)]
        if chosen.output_cap is None:
            assert not bounds, (dialect, form, sent)
        else:
            assert all(b <= chosen.output_cap for b in bounds), (dialect, form, sent, chosen.output_cap)
            thinking_sent = sent.get("thinking")
            budget = thinking_sent.get("budget_tokens") if isinstance(thinking_sent, dict) else None
            if dialect == "anthropic" and budget is not None:   # Anthropic bills thinking inside max_tokens
                assert budget < sent["max_tokens"] == chosen.output_cap
            if dialect == "openai" and budget is not None:      # providers differ: assume it bills on top
                assert chosen.output_cap >= max(bounds) + budget
        if dialect == "mock":   # the one upstream we run: what it bills is within the reservation
            billed = target.dialect.answer(chosen.request)["usage"]["completion_tokens"]
            assert chosen.output_cap is None or billed <= chosen.output_cap


MESSAGES_ATTACK = {"max_tokens": 4100, "thinking": {"type": "enabled", "budget_tokens": 4000},
                   "messages": [{"role": "user", "content": "think hard"}]}


@pytest.mark.parametrize("route", ["an-native", "oa-native", "oa-params", "retry-reaches-claude"])
@pytest.mark.parametrize("stream", [False, True])
async def test_concurrent_thinking_messages_never_pass_the_budget(start_gateway, upstream, route, stream):
    """The same attack through `/v1/messages`: an Anthropic target gets the client's own body, the others a
    translation, and each reservation is for what that target is sent."""
    upstream.greedy = True
    gateway = await start_gateway(routes(upstream.url))
    key = (await gateway.create_key(max_budget=BUDGET, rpm=1000, tpm=100_000))["key"]

    async def one() -> int:
        resp = await gateway.http.post(f"{gateway.url}/v1/messages", json={**MESSAGES_ATTACK, "model": route,
                                                                           "stream": stream},
                                       headers={"x-api-key": key})
        await resp.read()
        return resp.status

    statuses = await asyncio.gather(*(one() for _ in range(30)))
    assert set(statuses) <= {200, 429}, statuses
    spent = (await gateway.rows("SELECT COALESCE(SUM(cost_usd), 0) AS s FROM requests"))[0]["s"]
    assert spent <= BUDGET + 1e-9, f"{route}: spent ${spent:.5f} of a ${BUDGET} budget"
    assert statuses.count(200) >= 1
