"""The gateway on PostgreSQL (README "Running several instances"): what only a shared server shows.

Two gateways on one database see each other's key changes within 2 s; a PostgreSQL stopped
mid-run stalls no request and loses no row; `settings.db`, `--db` and GATEWAY_DB choose the
store in that order; the README's psql queries run in `psql` on a real ledger.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time

import aiohttp
import pytest

from gateway.app import create_app
from gateway.appkeys import ServerOptions
from gateway.cli import main
from gateway.clock import ManualClock
from gateway.config import parse_config
from tests.conftest import MASTER, check_error
from tests.pg import query
from tests.procs import free_port
from tests.test_ledger import readme_sql

HI = [{"role": "user", "content": "hi"}]
AUTH = {"Authorization": f"Bearer {MASTER}"}
ROUTES = """
providers:
  demo: {dialect: mock}
routes:
  demo:
    targets: [{provider: demo, model: chat, price: {input: 1.0, output: 1.0}}]
"""


@pytest.fixture
def db_kind() -> str:
    return "postgres"


async def test_a_key_revoked_through_one_gateway_is_refused_by_the_other_within_2s(start_gateway):
    one = await start_gateway(ROUTES)
    other = await start_gateway(ROUTES)                       # same db_name: the same PostgreSQL database
    assert one.db_path == other.db_path
    key = await one.create_key(rpm=1000)
    began = time.monotonic()
    while (await other.post(key["key"], {"model": "demo", "messages": HI})).status != 200:
        assert time.monotonic() - began < 2.0, "a key created through one gateway did not reach the other"
        await asyncio.sleep(0.05)
    async with one.http.delete(f"{one.url}/admin/keys/{key['id']}", headers=AUTH) as resp:
        assert resp.status == 200
    began = time.monotonic()
    while True:
        resp = await other.post(key["key"], {"model": "demo", "messages": HI})
        if resp.status == 401:
            check_error(await resp.json(), "key_revoked")
            break
        assert time.monotonic() - began < 2.0, "the revocation did not reach the other gateway within 2 s"
        await asyncio.sleep(0.05)
    await one.rows()
    rows = await other.rows("SELECT key_id, status FROM requests")
    assert len(rows) >= 1 and {r["status"] for r in rows} == {"ok"}      # both ledgers, one table


async def test_postgres_stopped_mid_run_stalls_no_request_and_loses_no_row(aiohttp_server, temp_postgres, caplog):
    app = create_app(parse_config(ROUTES), ServerOptions(config_path=None, db_path=temp_postgres.url,
                                                         master_key=MASTER, key_poll_interval=0.2))
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    async with aiohttp.ClientSession() as http:
        async def create() -> tuple[int, dict]:
            async with http.post(f"{url}/admin/keys", json={"name": "k", "rpm": 1000}, headers=AUTH) as resp:
                return resp.status, await resp.json()

        async def ask(n: int) -> list[int]:
            async def one() -> int:
                async with http.post(f"{url}/v1/chat/completions", json={"model": "demo", "messages": HI},
                                     headers={"Authorization": f"Bearer {key['key']}"}) as resp:
                    await resp.read()
                    return resp.status
            return await asyncio.gather(*(one() for _ in range(n)))

        async def get(path: str) -> tuple[int, str]:
            async with http.get(f"{url}{path}") as resp:
                return resp.status, await resp.text()

        status, key = await create()
        assert status == 201 and await ask(20) == [200] * 20
        await asyncio.to_thread(temp_postgres.stop)
        began = time.monotonic()
        assert await ask(30) == [200] * 30                      # requests flow while the ledger cannot write
        assert time.monotonic() - began < 5
        status, body = await get("/health")
        assert status == 503 and check_error(json.loads(body), "database_unavailable")
        status, body = await create()
        assert status == 503 and check_error(body, "database_unavailable")
        await asyncio.sleep(0.2)                                 # one writer tick: the rows are waiting now
        metrics = (await get("/metrics"))[1]
        assert re.search(r"^gateway_ledger_queue_depth (\d+)", metrics, re.M).group(1) != "0"
        assert "ledger write failed" in caplog.text
        await asyncio.to_thread(temp_postgres.start)
        assert await ask(10) == [200] * 10
        began = time.monotonic()
        while (await get("/health"))[0] != 200:
            assert time.monotonic() - began < 5, "the pool did not reconnect"
            await asyncio.sleep(0.05)
        while re.search(r"^gateway_ledger_queue_depth (\d+)", (await get("/metrics"))[1], re.M).group(1) != "0":
            assert time.monotonic() - began < 5, "the waiting rows were not written after the server came back"
            await asyncio.sleep(0.1)
        assert re.search(r"^gateway_ledger_dropped_rows_total (\S+)", (await get("/metrics"))[1], re.M).group(1) \
            == "0.0"
    await server.close()
    assert "ledger writes recovered" in caplog.text
    rows = await query(temp_postgres.url, "SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS ids FROM requests")
    assert rows == [{"n": 60, "ids": 60}]


def test_settings_db_chooses_the_store_and_the_flag_or_env_wins(tmp_path, pg_databases, capsys, monkeypatch):
    """In-process `main()` with the process environment set as a user would set it (no gateway internals)."""
    url = asyncio.run(pg_databases.url())
    config = tmp_path / "routes.yaml"
    config.write_text(f"settings:\n  db: {url}\n" + ROUTES)
    monkeypatch.delenv("GATEWAY_DB", raising=False)

    def create(*flags: str) -> str:
        assert main(["keys", "create", "--name", "n", "--json", "--config", str(config), *flags]) == 0
        return json.loads(capsys.readouterr().out)["id"]

    from_file = create()
    assert asyncio.run(query(url, "SELECT id FROM api_keys")) == [{"id": from_file}]
    lite = tmp_path / "flag.db"
    from_flag = create("--db", str(lite))
    monkeypatch.setenv("GATEWAY_DB", str(tmp_path / "env.db"))
    from_env = create()
    assert asyncio.run(query(url, "SELECT COUNT(*) AS n FROM api_keys")) == [{"n": 1}]
    for db, key_id in ((lite, from_flag), (tmp_path / "env.db", from_env)):
        assert main(["keys", "list", "--json", "--db", str(db), "--config", str(config)]) == 0
        assert [k["id"] for k in json.loads(capsys.readouterr().out)] == [key_id]
    assert main(["spend", "--json", "--config", str(config), "--db", url]) == 0
    assert json.loads(capsys.readouterr().out) == []


async def test_serve_without_its_database_exits_with_one_line(tmp_path):
    url = f"postgresql://gw:hunter2secret@127.0.0.1:{free_port()}/ledger"
    (tmp_path / "routes.yaml").write_text(ROUTES)
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "serve", "--port",
                                                   str(free_port()), "--config", str(tmp_path / "routes.yaml")],
                                  capture_output=True, text=True, timeout=60, env={**os.environ, "GATEWAY_DB": url})
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("gateway: error: The database does not answer"), out.stderr
    assert "hunter2secret" not in out.stderr + out.stdout and "Traceback" not in out.stderr


@pytest.mark.skipif(shutil.which("psql") is None, reason="NO psql CLIENT: the README's psql queries were not run")
async def test_the_readme_psql_queries_run_in_psql_on_a_real_ledger(start_gateway):
    statements = readme_sql("### PostgreSQL ledger")
    assert len(statements) >= 3
    clock = ManualClock(time.time() - 60)                 # today and this month, unless run in a day's first minute
    gw = await start_gateway(ROUTES, clock=clock)
    a, b = await gw.create_key(name="alpha"), await gw.create_key(name="beta", rpm=1)
    for who in (a, b, b, a):
        await gw.post(who["key"], {"model": "demo", "messages": HI})
    clock.advance(30)
    await gw.post(b["key"], {"model": "nope", "messages": HI})
    await gw.rows()
    for sql in statements:
        out = await asyncio.to_thread(subprocess.run, ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                                       "-d", str(gw.db_path), "-c", sql],
                                      capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and out.stdout.strip(), (sql, out.stderr)
    refusals = await asyncio.to_thread(subprocess.run, ["psql", "-X", "-A", "-t", "-d", str(gw.db_path),
                                                        "-c", statements[1]], capture_output=True, text=True)
    assert sorted(refusals.stdout.split()) == ["beta|rate_limit_exceeded|1"]   # the typo is no refusal
