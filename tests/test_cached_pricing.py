"""Spend that matches the invoice (SPEC section 11): cached prompt tokens and cache writes, booked and priced.

Every dialect reports prompt-cache usage in its own words (OpenAI `prompt_tokens_details.cached_tokens`,
Anthropic `cache_read_input_tokens` / `cache_creation_input_tokens`, in whole answers and in streams); the
ledger row must hold the same numbers in SPEC section 11's terms and `cost_usd` their price, checked here by
SQL against numbers worked out by hand, on both stores, stream or not, through the official SDK. What an
upstream reports is hostile: whatever it sends, a row is consistent (cached + cache writes within the
prompt, nothing negative) and priced by the same formula (hypothesis). A budget reserves the dearest way a
prompt can bill, so an upstream that bills the whole prompt as cache writes never passes it.
"""
from __future__ import annotations

import asyncio
import sqlite3

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.appkeys import LEDGER, ServerOptions
from gateway.clock import ManualClock
from gateway.config import parse_config
from gateway.store import is_postgres_url
from gateway.tokens import estimate_prompt
from tests.conftest import BOTH_DBS, CHUNK_SCHEMA, COMPLETION_SCHEMA, MASTER, parse_sse
from tests.fakes import Cache, FakeUpstream
from tests.pg import query as pg_query
from tests.procs import free_port

# USD per 1M tokens: input, cached_input, cache_write, output
GPT = (2.0, 0.5, 2.5, 8.0)
CLAUDE = (3.0, 0.3, 3.75, 15.0)
MOCK = (1.0, 0.25, 1.0, 2.0)


def price(p: tuple[float, float, float, float]) -> str:
    return f"{{input: {p[0]}, cached_input: {p[1]}, cache_write: {p[2]}, output: {p[3]}}}"


def routes(url: str) -> str:
    return f"""
providers:
  up: {{dialect: openai, base_url: "{url}/v1", api_key: upstream-secret-key-123}}
  claude: {{dialect: anthropic, base_url: "{url}", api_key: sk-ant-upstream-secret}}
  demo: {{dialect: mock}}
routes:
  gpt: {{timeout: 5, targets: [{{provider: up, model: up-model, price: {price(GPT)}}}]}}
  claude: {{timeout: 5, targets: [{{provider: claude, model: claude-x, price: {price(CLAUDE)}}}]}}
  mock: {{targets: [{{provider: demo, model: chat-cached, price: {price(MOCK)}}}]}}
"""


PRICES = {"gpt": GPT, "claude": CLAUDE, "mock": MOCK}
ROW = ("SELECT prompt_tokens, completion_tokens, total_tokens, cached_tokens, cache_write_tokens, cost_usd, endpoint, "
       "usage_source FROM requests WHERE request_id = ?")


def hand_cost(route: str, prompt: int, cached: int, write: int, completion: int) -> float:
    """SPEC section 11, written out once more: the uncached prompt at input, reads, writes, output."""
    inp, hit, put, out = PRICES[route]
    return ((prompt - cached - write) * inp + cached * hit + write * put + completion * out) / 1e6


# ---------------------------------------------------------------- hand-computed, through the SDK

CACHE = Cache(fresh=1000, read=3000, write=500, output=200)
EXPECTED = {   # (prompt, cached, cache_write, completion, cost_usd by hand)
    # Anthropic: prompt = input + reads + writes; reads at $0.30, writes at $3.75
    "claude": (4500, 3000, 500, 200, (1000 * 3.0 + 3000 * 0.3 + 500 * 3.75 + 200 * 15.0) / 1e6),   # $0.008775
    # OpenAI: prompt_tokens (4500) includes the 3000 cached; no cache writes, so 1500 bill at input
    "gpt": (4500, 3000, 0, 200, (1500 * 2.0 + 3000 * 0.5 + 200 * 8.0) / 1e6),                      # $0.0061
}


@BOTH_DBS
@pytest.mark.parametrize("route", ["claude", "gpt"])
@pytest.mark.parametrize("stream", [False, True])
async def test_cached_and_cache_write_tokens_are_booked_and_priced(start_gateway, upstream, route, stream):
    upstream.cache = CACHE
    gw = await start_gateway(routes(upstream.url))
    made = await gw.create_key()
    key = made["key"]
    client = gw.sdk(key)
    messages = [{"role": "user", "content": "a long shared prefix"}]
    if stream:
        raw = await client.chat.completions.with_raw_response.create(
            model=route, messages=messages, stream=True, stream_options={"include_usage": True})
        chunks = [c async for c in raw.parse()]
        usage = chunks[-1].usage
    else:
        raw = await client.chat.completions.with_raw_response.create(model=route, messages=messages)
        usage = raw.parse().usage
    request_id = raw.headers["x-request-id"]
    prompt, cached, write, completion, cost = EXPECTED[route]
    (row,) = await gw.rows(ROW, (request_id,))
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"], row["completion_tokens"]) == \
        (prompt, cached, write, completion)
    assert row["total_tokens"] == prompt + completion and row["usage_source"] == "upstream"
    assert row["cost_usd"] == pytest.approx(cost, rel=1e-12) and row["endpoint"] == "chat.completions"
    (by_sql,) = await gw.rows("SELECT SUM(cost_usd) AS usd, SUM(cached_tokens) AS hit FROM spend_by_key")
    assert by_sql["usd"] == pytest.approx(cost, rel=1e-12) and by_sql["hit"] == cached
    # what the client reads: every prompt token, of which `cached_tokens` came from the cache
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, completion)
    assert usage.prompt_tokens_details.cached_tokens == cached
    # the budget counts the same cost as the ledger
    async with gw.http.get(f"{gw.url}/admin/keys/{made['id']}", headers={"Authorization": f"Bearer {MASTER}"}) as r:
        assert (await r.json())["spend_total"] == pytest.approx(cost, rel=1e-9)


@pytest.mark.parametrize("stream", [False, True])
async def test_the_mock_reports_cached_tokens_on_cue_and_chat_answers_carry_them(start_gateway, upstream, stream):
    gw = await start_gateway(routes(upstream.url))
    key = (await gw.create_key())["key"]
    body = {"model": "mock", "messages": [{"role": "user", "content": "one two three four five six"}]}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    resp = await gw.post(key, body)
    assert resp.status == 200
    usage = parse_sse(await resp.read())[-2]["usage"] if stream else (await resp.json())["usage"]
    (row,) = await gw.rows(ROW, (resp.headers["x-request-id"],))
    assert row["prompt_tokens"] == 13 and row["cached_tokens"] == 13 // 2 and row["cache_write_tokens"] == 0
    assert row["cost_usd"] == pytest.approx(hand_cost("mock", 13, 6, 0, row["completion_tokens"]), rel=1e-12)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 6}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}


# ---------------------------------------------------------------- budgets with cached prices

DEAR_WRITES = "{input: 1.0, cached_input: 0.1, cache_write: 10.0, output: 1.0}"
ASK = {"model": "dear", "max_tokens": 10, "messages": [{"role": "user", "content": "cache this " * 50}]}


@pytest.mark.parametrize("stream", [False, True])
async def test_a_budget_holds_when_the_whole_prompt_bills_as_cache_writes(start_gateway, upstream, limiter_url,
                                                                            stream):
    """Reservations price the prompt at the dearest of input, cached_input and cache_write: an upstream that
    bills every prompt token as a cache write (10x input here) and every allowed output token fits 5 requests
    in a budget of 5.5 of them, however many run at once (at input price, about 40 of 40 would be admitted)."""
    estimate = estimate_prompt(ASK)
    upstream.cache = Cache(fresh=0, read=0, write=estimate, output=ASK["max_tokens"])
    per_request = (estimate * 10.0 + ASK["max_tokens"] * 1.0) / 1e6
    yaml = routes(upstream.url) + f"  dear: {{targets: [{{provider: claude, model: c, price: {DEAR_WRITES}}}]}}\n"
    gw = await start_gateway(yaml, limiter_url=limiter_url)
    key = (await gw.create_key(max_budget=round(per_request * 5.5, 9), rpm=1000, tpm=100000))["key"]

    async def one() -> int:
        resp = await gw.post(key, {**ASK, "stream": stream})
        await resp.read()
        return resp.status

    statuses = await asyncio.gather(*(one() for _ in range(40)))
    (spent,) = await gw.rows("SELECT SUM(cost_usd) AS usd, SUM(cache_write_tokens) AS w FROM requests "
                             "WHERE status = 'ok'")
    assert statuses.count(200) == 5 and spent["w"] == 5 * estimate
    assert spent["usd"] == pytest.approx(5 * per_request, rel=1e-9) and spent["usd"] <= per_request * 5.5


# ---------------------------------------------------------------- hostile usage numbers (hypothesis)

hostile = st.one_of(st.integers(0, 10_000), st.integers(-5, 2 ** 33), st.none(), st.text(max_size=3),
                    st.floats(-10, 1e12, allow_nan=False, allow_infinity=False), st.booleans())
valid = st.integers(0, 10_000)


class _Live:
    """A fake upstream and a gateway on real ports, in a loop of the test's own (hypothesis drives it)."""

    def __init__(self, db: str):
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.upstream = FakeUpstream()
        self.runners: list[web.AppRunner] = []
        up_port = self.run(self._serve(self.upstream.app()))
        self.upstream.url = f"http://127.0.0.1:{up_port}"
        self.clock = ManualClock()     # moved a minute on per request: no TPM window fills up
        unlimited = "settings: {limits: {default_budget: 1.0e+15, max_budget: 1.0e+15}}\n"   # costs go huge here
        self.app = create_app(parse_config(unlimited + routes(self.upstream.url)),
                              ServerOptions(None, db, master_key=MASTER),
                              clock=self.clock)
        self.url = f"http://127.0.0.1:{self.run(self._serve(self.app))}"
        self.http = self.run(self._session())
        self.key = self.run(self._key())

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self.runners.append(runner)
        return port

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    async def _key(self) -> str:
        async with self.http.post(f"{self.url}/admin/keys", json={"name": "p", "rpm": 1000, "tpm": 100000},
                                  headers={"Authorization": f"Bearer {MASTER}"}) as resp:
            return (await resp.json())["key"]

    async def ask(self, route: str, stream: bool) -> tuple[str, dict | None, list]:
        self.clock.advance(61)
        body = {"model": route, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        async with self.http.post(f"{self.url}/v1/chat/completions", json=body,
                                  headers={"Authorization": f"Bearer {self.key}"}) as resp:
            assert resp.status == 200, await resp.text()
            request_id = resp.headers["x-request-id"]
            if not stream:
                answer = await resp.json()
                assert not list(COMPLETION_SCHEMA.iter_errors(answer))
                return request_id, answer["usage"], [answer]
            events = parse_sse(await resp.read())
            chunks = [e for e in events if isinstance(e, dict)]
            assert all(not list(CHUNK_SCHEMA.iter_errors(c)) for c in chunks)
            return request_id, chunks[-1]["usage"], chunks

    async def row(self, request_id: str) -> dict:
        await self.app[LEDGER].flush()
        if is_postgres_url(self.db):
            (found,) = await pg_query(self.db, ROW, (request_id,))
            return found
        con = sqlite3.connect(self.db)
        con.row_factory = sqlite3.Row
        try:
            return dict(con.execute(ROW, (request_id,)).fetchone())
        finally:
            con.close()

    def close(self) -> None:
        self.run(self.http.close())
        for runner in reversed(self.runners):
            self.run(runner.cleanup())
        self.loop.close()


def _whole(*values) -> bool:
    return all(v.__class__ is int and 0 <= v < 2 ** 31 for v in values)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
def test_any_usage_an_upstream_reports_is_booked_consistent_and_priced(tmp_path, pg_databases, db_kind):
    """Property, over both dialects, stream or not, on both stores: whatever cache usage an upstream reports
    (negative, fractional, huge, text, cached above the prompt), the row's prompt holds its cached and
    cache-write tokens, nothing is negative, cost_usd is SPEC section 11's formula over the row, and the
    client reads the same numbers; reported sanely, the numbers are the upstream's exactly."""
    loop = asyncio.new_event_loop()
    db = str(tmp_path / "p.db") if db_kind == "sqlite" else loop.run_until_complete(pg_databases.url("p"))
    loop.close()
    live = _Live(db)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(["claude", "gpt"]), stream=st.booleans(), sane=st.booleans(),
           numbers=st.tuples(hostile, hostile, hostile, hostile, hostile), sane_numbers=st.tuples(valid, valid, valid,
                                                                                                valid),
           repeats=st.booleans())
    def prop(route, stream, sane, numbers, sane_numbers, repeats):
        fresh, read, write, output, lie = numbers if not sane else (*sane_numbers, None)
        live.upstream.cache = Cache(fresh, read, write, output, repeats, lie if route == "gpt" else None)
        request_id, usage, _ = live.run(live.ask(route, stream))
        row = live.run(live.row(request_id))
        p, hit, put, c = row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"], row["completion_tokens"]
        assert min(p, hit, put, c) >= 0 and hit + put <= p and row["total_tokens"] == p + c
        assert row["cost_usd"] == pytest.approx(hand_cost(route, p, hit, put, c), rel=1e-9, abs=1e-15)
        assert (usage["prompt_tokens"], usage["completion_tokens"]) == (p, c)
        assert usage.get("prompt_tokens_details", {}).get("cached_tokens", 0) == hit
        if sane or (_whole(fresh, read, write, output) and lie is None and fresh + read + write < 2 ** 31):
            assert (p, hit, c) == (fresh + read + write, read, output)
            assert put == (write if route == "claude" else 0)     # OpenAI reports no cache writes

    try:
        prop()
    finally:
        live.close()


# ---------------------------------------------------------------- the README's SQL, on both stores

@BOTH_DBS
async def test_the_readmes_cached_input_queries_split_spend_as_billed(start_gateway, upstream):
    """Its queries, as written, on a ledger of a table-priced claude-sonnet-4-5 target: the parts add up."""
    from tests.test_ledger import readme_sql

    upstream.cache = CACHE
    yaml = routes(upstream.url) + "  sonnet: {targets: [{provider: claude, model: claude-sonnet-4-5}]}\n"
    gw = await start_gateway(yaml)
    key = (await gw.create_key())["key"]
    for stream in (False, True):
        resp = await gw.post(key, {"model": "sonnet", "stream": stream, "messages": [{"role": "user", "content": "x"}]})
        assert resp.status == 200
        await resp.read()
    split, dollars = readme_sql("## Prices and cached tokens")
    shares = [tuple(float(v) if not isinstance(v, (str, int)) else v for v in r.values()) for r in await gw.rows(split)]
    assert shares == [("sonnet", 2000, 6000, 1000, 66.7)]      # psql answers numeric, sqlite3 a float
    (row,) = [tuple(float(v) if not isinstance(v, str) else v for v in r.values()) for r in await gw.rows(dollars)]
    assert row == pytest.approx(("sonnet", 2000 * 3.00 / 1e6, 6000 * 0.30 / 1e6, 1000 * 3.75 / 1e6,
                                 6000 * 2.70 / 1e6 - 1000 * 0.75 / 1e6))
    (total,) = await gw.rows("SELECT SUM(cost_usd) AS usd FROM requests")
    assert total["usd"] == pytest.approx(sum(row[1:4]) + 2 * 200 * 15.0 / 1e6)      # input parts + output
