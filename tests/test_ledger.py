"""The ledger (SPEC section 7): one row per request with a valid key, views, spend reports, restarts."""
from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from gateway.app import create_app
from gateway.appkeys import ServerOptions
from gateway.cli import main
from gateway.clock import ManualClock
from gateway.config import parse_config
from gateway.store import is_postgres_url
from tests.conftest import BOTH_DBS, MASTER, check_error
from tests.fakes import Behaviour
from tests.pg import query as pg_query

HI = [{"role": "user", "content": "hi"}]
AUTH = {"Authorization": f"Bearer {MASTER}"}
ROUTES = """
providers:
  demo: {dialect: mock}
routes:
  demo:
    targets: [{provider: demo, model: chat, price: {input: 1.0, output: 1.0}}]
  pricey:
    targets: [{provider: demo, model: chat, price: {input: 1000, output: 1000}}]
"""
README = Path(__file__).parent.parent / "README.md"


def at(text: str) -> ManualClock:
    return ManualClock(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def query(db: Path, sql: str, params: tuple = ()) -> list[dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params)]
    finally:
        con.close()


@BOTH_DBS
async def test_every_request_with_a_valid_key_is_one_row(gateway, upstream):
    key = await gateway.create_key(models=["demo", "gpt"])
    tight = await gateway.create_key(rpm=1)
    gone = await gateway.create_key()
    async with gateway.http.delete(f"{gateway.url}/admin/keys/{gone['id']}", headers=AUTH) as resp:
        assert resp.status == 200
    upstream.queue(*[Behaviour(status=500)] * 3)
    sent = [  # (key, body, expected status, expected http status, expected error code)
        (key, {"model": "demo", "messages": HI}, "ok", 200, None),
        (key, {"model": "demo", "messages": HI, "stream": True}, "ok", 200, None),
        (key, {"model": "gpt", "messages": HI}, "error", 502, "upstream_error"),
        (key, {"model": "demo", "messages": HI, "temperature": 5}, "rejected", 400, "invalid_value"),
        (key, b"{not json", "rejected", 400, "invalid_json"),
        (key, {"model": "nope", "messages": HI}, "rejected", 404, "model_not_found"),
        (key, {"model": "claude", "messages": HI}, "rejected", 403, "model_not_allowed"),
        (tight, {"model": "demo", "messages": HI}, "ok", 200, None),
        (tight, {"model": "demo", "messages": HI}, "rejected", 429, "rate_limit_exceeded"),
    ]
    for who, body, _, http_status, _ in sent:
        assert (await gateway.post(who["key"], body)).status == http_status
    for secret in (None, "sk-not-a-key", gone["key"]):          # no valid key: no row
        assert (await gateway.post(secret, {"model": "demo", "messages": HI})).status == 401
    async with gateway.http.get(f"{gateway.base_url}/models", headers={"Authorization": f"Bearer {key['key']}"}):
        pass                                                     # GET endpoints are not booked
    rows = await gateway.rows("SELECT key_id, status, http_status, error_code, stream FROM requests ORDER BY id")
    assert [(r["key_id"], r["status"], r["http_status"], r["error_code"]) for r in rows] == \
        [(who["id"], status, http_status, code) for who, _, status, http_status, code in sent]
    assert [r["stream"] for r in rows][:2] == [0, 1]


@BOTH_DBS
async def test_concurrent_flushes_write_each_row_once(start_gateway, caplog):
    gw = await start_gateway(ROUTES)
    key = await gw.create_key(rpm=1000)
    await asyncio.gather(*(gw.post(key["key"], {"model": "demo", "messages": HI}) for _ in range(200)))

    async def spend() -> None:
        async with gw.http.get(f"{gw.url}/admin/spend", headers=AUTH) as resp:   # each flushes the ledger
            assert resp.status == 200

    await asyncio.gather(*(spend() for _ in range(10)), gw.rows())
    rows = await gw.rows("SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS ids FROM requests")
    assert rows == [{"n": 200, "ids": 200}]
    assert "ledger write failed" not in caplog.text


async def fill_two_days(gw, clock: ManualClock) -> tuple[dict, dict]:
    """Two keys, two models, two days, refusals included."""
    a = await gw.create_key(name="alpha")
    b = await gw.create_key(name="beta", rpm=2)
    for who, model in [(a, "demo"), (a, "pricey"), (b, "pricey"), (b, "demo"), (b, "demo")]:
        await gw.post(who["key"], {"model": model, "messages": HI})
    await gw.post(a["key"], {"model": "demo", "messages": HI, "temperature": 9})
    clock.advance(86400)
    for who, model in [(a, "pricey"), (b, "demo"), (a, "demo")]:
        await gw.post(who["key"], {"model": model, "messages": HI, "stream": True})
    await gw.post(b["key"], {"model": "nope", "messages": HI})
    await gw.rows()
    return a, b


def run_cli(capsys, *argv: str):
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0
    return out


async def test_views_sum_to_the_ledger_and_spend_reports_show_them(start_gateway, capsys):
    clock = at("2024-05-10T23:00:00")
    gw = await start_gateway(ROUTES, clock=clock)
    a, b = await fill_two_days(gw, clock)
    db = gw.db_path
    admitted = "status != 'rejected'"     # the views count admitted requests; refusals and errors beside them
    whole = query(db, "SELECT COUNT(*) AS requests, SUM(prompt_tokens) AS prompt_tokens, "
                      "SUM(completion_tokens) AS completion_tokens, SUM(cached_tokens) AS cached_tokens, "
                      f"SUM(cost_usd) AS cost_usd FROM requests WHERE {admitted}")[0]
    assert whole["requests"] == 7 and whole["cost_usd"] > 0
    assert query(db, "SELECT COUNT(*) AS n FROM requests")[0]["n"] == 10     # and 3 rejected rows
    groups = {"key": "key_id", "model": "route", "day": "substr(created_at, 1, 10)"}
    for by, column in groups.items():
        view = query(db, f"SELECT * FROM spend_by_{by}")
        for field in ("requests", "prompt_tokens", "completion_tokens", "cached_tokens"):
            assert sum(r[field] for r in view) == whole[field], (by, field)
        assert sum(r["refused"] for r in view) == 1 and sum(r["errors"] for r in view) == 0   # rpm 2; not the typos
        assert sum(r["cost_usd"] for r in view) == pytest.approx(whole["cost_usd"], rel=1e-12)
        direct = query(db, f"SELECT {column} AS g, COUNT(*) AS requests, SUM(cost_usd) AS cost_usd "
                           f"FROM requests WHERE {admitted} GROUP BY {column}")
        first = {"key": "key_id", "model": "model", "day": "day"}[by]
        assert sorted(((r[first], r["requests"], round(r["cost_usd"], 12)) for r in view), key=str) == \
            sorted(((r["g"], r["requests"], round(r["cost_usd"], 12)) for r in direct), key=str)
    assert {r["name"] for r in query(db, "SELECT name FROM spend_by_key")} == {"alpha", "beta"}
    assert [r["day"] for r in query(db, "SELECT day FROM spend_by_day ORDER BY day")] == ["2024-05-10", "2024-05-11"]

    for by in groups:
        cli_rows = json.loads(await asyncio.to_thread(run_cli, capsys, "spend", "--by", by, "--json", "--db", str(db)))
        async with gw.http.get(f"{gw.url}/admin/spend?by={by}", headers=AUTH) as resp:
            api_rows = (await resp.json())["data"]
        view = query(db, f"SELECT * FROM spend_by_{by}")
        key_of = lambda r: json.dumps(r, sort_keys=True)                       # noqa: E731
        assert sorted(map(key_of, cli_rows)) == sorted(map(key_of, api_rows)) == sorted(map(key_of, view))
    since = json.loads(await asyncio.to_thread(run_cli, capsys, "spend", "--by", "day", "--since", "2024-05-11",
                                               "--json", "--db", str(db)))
    assert [(r["day"], r["requests"]) for r in since] == [("2024-05-11", 3)]     # not the unknown model
    async with gw.http.get(f"{gw.url}/admin/spend?by=key&since=2024-05-11", headers=AUTH) as resp:
        assert sum(r["requests"] for r in (await resp.json())["data"]) == 3
    table = await asyncio.to_thread(run_cli, capsys, "spend", "--by", "key", "--db", str(db))
    assert table.splitlines()[0].split() == ["key_id", "name", "requests", "refused", "errors", "prompt_tokens",
                                             "completion_tokens", "cached_tokens", "cost_usd"]
    assert a["id"] in table and b["id"] in table


@BOTH_DBS
async def test_windows_and_spend_survive_a_restart(aiohttp_server, tmp_path, db_kind, pg_databases):
    clock = at("2024-05-10T12:00:00")
    db = tmp_path / "gateway.db" if db_kind == "sqlite" else await pg_databases.url()

    async def boot():
        app = create_app(parse_config(ROUTES), ServerOptions(config_path=None, db_path=str(db), master_key=MASTER),
                         clock=clock)
        server = await aiohttp_server(app)
        return server, str(server.make_url("")).rstrip("/")

    async with aiohttp.ClientSession() as http:
        async def post(url: str, key: dict, model: str = "demo", **extra):
            async with http.post(f"{url}/v1/chat/completions", json={"model": model, "messages": HI, **extra},
                                 headers={"Authorization": f"Bearer {key['key']}"}) as resp:
                return resp.status, dict(resp.headers), await resp.json()

        async def create(url: str, **fields) -> dict:
            async with http.post(f"{url}/admin/keys", json={"name": "k", **fields}, headers=AUTH) as resp:
                return await resp.json()

        first, url = await boot()
        r, t, b = await create(url, rpm=3), await create(url, tpm=60), await create(url, max_budget=0.05)
        assert [(await post(url, r))[0] for _ in range(4)] == [200, 200, 200, 429]
        assert [(await post(url, t))[0] for _ in range(2)] == [200, 200]           # 58 of 60 tokens
        assert (await post(url, b, "pricey", max_tokens=30))[0] == 200             # $0.029 of $0.05
        await first.close()                                                        # the app cleans up: ledger flushed

        clock.advance(10)
        second, url = await boot()
        shown = {}
        for k in (r, t, b):
            async with http.get(f"{url}/admin/keys/{k['id']}", headers=AUTH) as resp:
                shown[k["id"]] = await resp.json()
        assert shown[r["id"]]["rpm_used"] == 3 and shown[t["id"]]["tpm_used"] == 58
        assert shown[b["id"]]["spend_period"] == pytest.approx(0.029)
        assert shown[b["id"]]["spend_total"] == pytest.approx(0.029)
        status, headers, body = await post(url, r)
        assert status == 429 and abs(int(headers["Retry-After"]) - 50) <= 1
        status, headers, body = await post(url, t)
        assert status == 429 and abs(int(headers["Retry-After"]) - 50) <= 1
        status, headers, body = await post(url, b, "pricey", max_tokens=30)
        assert status == 429 and check_error(body, "budget_exceeded")
        clock.advance(50)
        assert (await post(url, r))[0] == 200 and (await post(url, t))[0] == 200
        await second.close()
    count = "SELECT COUNT(*) AS n FROM requests"
    assert (await pg_query(db, count) if is_postgres_url(str(db)) else query(db, count)) == [{"n": 12}]


def readme_sql(heading: str = "## Keys, limits and spend") -> list[str]:
    """The SQL statements of one README section, comments dropped (also used for the psql section)."""
    text = README.read_text()
    start = text.find("\n" + heading)
    assert start >= 0, f"README has no {heading!r} section"
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else len(text)]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    code = "\n".join(line for block in blocks for line in block.splitlines() if not line.strip().startswith("--"))
    return [q.strip() for q in code.split(";") if q.strip()]


async def test_the_readme_queries_run_on_a_real_ledger(start_gateway):
    statements = readme_sql()
    assert len(statements) >= 3
    clock = ManualClock(time.time() - 86400)        # yesterday and today, for queries about "this month"
    gw = await start_gateway(ROUTES, clock=clock)
    await fill_two_days(gw, clock)
    hasty = await gw.create_key(name="hasty", rpm=1)              # a refusal today: the refusal query's answer
    for _ in range(2):
        await gw.post(hasty["key"], {"model": "demo", "messages": HI})
    await gw.rows()
    con = sqlite3.connect(gw.db_path)
    try:
        for sql in statements:
            assert con.execute(sql).fetchall(), sql
    finally:
        con.close()
