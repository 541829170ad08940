"""What the ledger's views and the README's queries mean (issue 18 item 10), against a real gateway.

A client's mistakes (a 400, an unknown model) are `rejected` rows like a key's refusals (its limits,
budget, model list), but they are not spend and not "hitting a limit": the spend views count the
admitted requests, with `refused` and `errors` beside them, and the README's refusal query filters on
the refusal codes. The README's SQL runs here as written, on SQLite and on PostgreSQL.
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from gateway.store import is_postgres_url
from tests.conftest import BOTH_DBS
from tests.pg import query as pg_query
from tests.procs import free_port

README = Path(__file__).resolve().parent.parent / "README.md"
HI = [{"role": "user", "content": "hi"}]


def routes() -> str:
    return f"""
providers:
  demo: {{dialect: mock}}
  gone: {{dialect: openai, base_url: "http://127.0.0.1:{free_port()}/v1", api_key: k}}
routes:
  demo:
    targets: [{{provider: demo, model: chat, price: {{input: 1.0, output: 1.0}}}}]
  other:
    targets: [{{provider: demo, model: chat, price: {{input: 1.0, output: 1.0}}}}]
  broken:
    retries: 0
    targets: [{{provider: gone, model: m, price: {{input: 1.0, output: 1.0}}}}]
"""


def readme_queries(after: str) -> list[str]:
    """The statements of the first ```sql block after the line containing `after`."""
    text = README.read_text()
    block = re.search(r"```sql\n(.*?)```", text[text.index(after):], re.S)
    assert block, after
    body = "\n".join(line for line in block.group(1).splitlines() if not line.startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


async def run_sql(db, sql: str) -> list[tuple]:
    if is_postgres_url(str(db)):
        return [tuple(r.values()) for r in await pg_query(str(db), sql)]
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@BOTH_DBS
async def test_views_and_readme_queries_count_what_they_say(start_gateway, db_kind):
    gw = await start_gateway(routes())
    a = await gw.create_key(name="alpha", rpm=3, models=["demo", "broken"])
    b = await gw.create_key(name="beta", max_budget=0)
    statuses = []
    for key, body in [(a, {"model": "broken"}),                           # admitted, upstream failed: error
                      (a, {"model": "demo"}), (a, {"model": "demo"}),      # admitted
                      (a, {"model": "demo"}),                             # rpm 3: refused, 429
                      (a, {"model": "other"}),                            # not in its models: refused, 403
                      (a, {"model": "demo", "temperature": 9}),           # a client mistake: 400
                      (a, {"model": "nope"}),                             # a typo: 404, no route
                      (b, {"model": "demo", "max_tokens": 5})]:           # budget $0: refused, 429
        resp = await gw.post(key["key"], {"messages": HI, **body})
        statuses.append(resp.status)
    assert statuses == [502, 200, 200, 429, 403, 400, 404, 429]
    rows = await gw.rows("SELECT status, error_code FROM requests ORDER BY id")
    assert [r["status"] for r in rows].count("rejected") == 5

    by_key = {r["name"]: (r["requests"], r["refused"], r["errors"])
              for r in await gw.rows("SELECT * FROM spend_by_key")}
    assert by_key == {"alpha": (3, 2, 1), "beta": (0, 1, 0)}
    by_model = {r["model"]: (r["requests"], r["refused"], r["errors"])
                for r in await gw.rows("SELECT * FROM spend_by_model")}
    assert by_model == {"demo": (2, 2, 0), "other": (0, 1, 0), "broken": (1, 0, 1)}     # no blank model
    (day,) = await gw.rows("SELECT * FROM spend_by_day")
    assert (day["requests"], day["refused"], day["errors"]) == (3, 3, 1)

    # the README's questions, as written for sqlite3 and for psql
    after = "psql \"$GATEWAY_DB\"" if db_kind == "postgres" else "sqlite3 gateway.db"
    spend, refusals, traffic = readme_queries(after)
    assert sorted((name, n) for name, n, *_ in await run_sql(gw.db_path, spend)) == [("alpha", 3)]
    assert sorted(await run_sql(gw.db_path, refusals)) == [
        ("alpha", "model_not_allowed", 1), ("alpha", "rate_limit_exceeded", 1), ("beta", "budget_exceeded", 1)]
    found = {(route, n, errors) for route, _, n, errors, *_ in await run_sql(gw.db_path, traffic)}
    assert found == {("demo", 2, 0), ("broken", 1, 1)}


@pytest.mark.parametrize("by", ["key", "model", "day"])
async def test_spend_reports_show_refusals_and_name_rows_without_a_route(start_gateway, by, capsys):
    import asyncio

    from gateway.cli import main

    gw = await start_gateway(routes())
    key = await gw.create_key(name="solo", rpm=1)
    for model in ("demo", "demo", "nope"):
        await gw.post(key["key"], {"model": model, "messages": HI})
    await gw.rows()
    code = await asyncio.to_thread(main, ["spend", "--by", by, "--db", str(gw.db_path), "--config", "none.yaml"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and lines[0].split()[-7:] == ["requests", "refused", "errors", "prompt_tokens",
                                                   "completion_tokens", "cached_tokens", "cost_usd"]
    assert len(lines) == 2                               # one row: the typo is not a row of its own
    cells = lines[1].split()
    assert cells[-7:-4] == ["1", "1", "0"]                # 1 admitted, 1 refused (rpm 1), 0 errors
