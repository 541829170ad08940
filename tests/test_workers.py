"""Several real `gateway serve` processes sharing Redis limits and one ledger (issue 9).

Two separate processes on two ports (as on two machines behind a load balancer), and one
`serve --workers 2` on one port. They share a SQLite file (WAL: each process its own writer).
Each test uses REDIS_TEST_URL (db 13, flushed before and after; db 14 on the second xdist worker).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import MASTER
from tests.pg import query as pg_query
from tests.procs import GatewayProcess, run_cli

ROUTES = """
settings:
  limits: {default_rpm: 1000000, default_tpm: 100000000, default_budget: 1000000,
           max_rpm: 1000000, max_tpm: 100000000, max_budget: 1000000}
providers:
  demo: {dialect: mock}
  slow: {dialect: mock, chunk_delay_ms: 40}
routes:
  demo:
    targets: [{provider: demo, model: chat, price: {input: 1, output: 1}}]
  pricey-slow:
    targets: [{provider: slow, model: chat, price: {input: 1000, output: 1000}}]
"""
HI = [{"role": "user", "content": "hi"}]


def pair(tmp_path: Path, redis_url: str, env: dict | None = None) -> list[GatewayProcess]:
    return [GatewayProcess(tmp_path, ROUTES, name=f"gw{i}", env={"GATEWAY_LIMITS": redis_url, **(env or {})})
            for i in (1, 2)]


def sql(db: Path, query: str, params: tuple = ()) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(query, params).fetchall()
    finally:
        con.close()


def key_id(proc: GatewayProcess, secret: str) -> str:
    import hashlib
    digest = hashlib.sha256(secret.encode()).hexdigest()
    return sql(proc.db, "SELECT id FROM api_keys WHERE key_hash = ?", (digest,))[0][0]


async def post(http: aiohttp.ClientSession, port: int, key: str, model: str = "demo", **extra) -> int:
    async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": model, "messages": HI, **extra},
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        await resp.read()
        return resp.status


def stop_all(procs: list[GatewayProcess]) -> None:
    for proc in procs:
        if proc.proc is not None:
            assert proc.stop() == 0
            log = proc.log.read_text()
            assert "Traceback" not in log, log[-2000:]


async def test_two_processes_admit_exactly_100_of_150_on_rpm_100(tmp_path, redis_url):
    procs = pair(tmp_path, redis_url)
    key = procs[0].create_key("--rpm", "100")
    for proc in procs:
        proc.key = key
        proc.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            statuses = await asyncio.gather(*(post(http, procs[i % 2].port, key) for i in range(150)))
    finally:
        stop_all(procs)
    assert statuses.count(200) == 100 and statuses.count(429) == 50
    by_port = [statuses[i::2].count(200) for i in (0, 1)]
    assert all(n > 0 for n in by_port), by_port                  # both processes admitted some
    assert sql(procs[0].db, "SELECT status, COUNT(*) FROM requests GROUP BY status ORDER BY status") == \
        [("ok", 100), ("rejected", 50)]


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
async def test_concurrent_max_tokens_requests_across_two_processes_never_exceed_the_budget(tmp_path, redis_url,
                                                                                           db_kind, pg_databases):
    db = await pg_databases.url("budget") if db_kind == "postgres" else None
    procs = [GatewayProcess(tmp_path, ROUTES, name=f"gw{i}", env={"GATEWAY_LIMITS": redis_url}, db=db) for i in (1, 2)]
    key = procs[0].create_key("--budget", "0.3")
    for proc in procs:
        proc.key = key
        proc.start()
    try:   # worst case (8 + 10) * $0.001 = $0.018 each; 50 in flight would spend $0.9 without reservations
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            statuses = await asyncio.gather(*(post(http, procs[i % 2].port, key, "pricey-slow", max_tokens=10)
                                              for i in range(50)))
    finally:
        stop_all(procs)
    assert 0 < statuses.count(200) < 50 and statuses.count(200) + statuses.count(429) == 50
    if db_kind == "postgres":      # the SQL sum, typed as a user would in psql
        spent = (await pg_query(db, "SELECT SUM(cost_usd) AS spent FROM requests"))[0]["spent"]
    else:
        spent = sql(procs[0].db, "SELECT SUM(cost_usd) FROM requests")[0][0]
    assert 0.3 - 0.018 - 1e-9 < spent <= 0.3 + 1e-9


async def test_a_key_revoked_through_one_process_is_refused_by_the_other_within_2s(tmp_path, redis_url):
    procs = pair(tmp_path, redis_url, env={"GATEWAY_MASTER_KEY": MASTER})
    key = procs[0].create_key()
    for proc in procs:
        proc.key = key
        proc.start()
    try:
        async with aiohttp.ClientSession() as http:
            assert [await post(http, p.port, key) for p in procs] == [200, 200]
            async with http.delete(f"http://127.0.0.1:{procs[0].port}/admin/keys/{key_id(procs[0], key)}",
                                   headers={"Authorization": f"Bearer {MASTER}"}) as resp:
                assert resp.status == 200
            revoked = time.monotonic()
            assert await post(http, procs[0].port, key) == 401           # at once where it was revoked
            while await post(http, procs[1].port, key) != 401:
                assert time.monotonic() - revoked < 2.0
                await asyncio.sleep(0.05)
    finally:
        stop_all(procs)


async def test_sigterm_of_one_process_under_load_loses_no_ledger_row(tmp_path, redis_url):
    procs = pair(tmp_path, redis_url)
    keys = [procs[0].create_key(), procs[0].create_key()]                # one key per process: rows tell apart
    for proc, key in zip(procs, keys, strict=True):
        proc.key = key
        proc.start()
    started = [0, 0]
    finished = [0, 0]

    async def stream(http, i: int) -> None:
        async with http.post(f"http://127.0.0.1:{procs[i].port}/v1/chat/completions",
                             headers={"Authorization": f"Bearer {keys[i]}"},
                             json={"model": "pricey-slow", "messages": HI, "stream": True}) as r:
            assert r.status == 200
            started[i] += 1
            await r.read()
            finished[i] += 1
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            tasks = [asyncio.create_task(stream(http, i % 2)) for i in range(60)]
            while sum(started) < 60:
                await asyncio.sleep(0.01)
            procs[0].proc.send_signal(signal.SIGTERM)                  # 30 streams in flight on it
            code = await asyncio.to_thread(procs[0].proc.wait, 30)
            await asyncio.gather(*tasks)
            more = await asyncio.gather(*(post(http, procs[1].port, keys[1]) for _ in range(10)))
    finally:
        stop_all(procs)
    assert code == 0 and finished == [30, 30] and more == [200] * 10
    rows = dict(sql(procs[0].db, "SELECT key_id, COUNT(*) FROM requests WHERE status = 'ok' GROUP BY key_id"))
    assert rows == {key_id(procs[0], keys[0]): 30, key_id(procs[0], keys[1]): 40}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def test_workers_2_share_one_port_and_exact_limits_and_stop_together(tmp_path, redis_url):
    proc = GatewayProcess(tmp_path, ROUTES, args=("--workers", "2", "--limits", redis_url))
    proc.key = proc.create_key("--rpm", "100")
    proc.start()
    workers = _children(proc.proc.pid)
    assert len(workers) == 2
    before = [_cpu_ticks(w) for w in workers]
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as http:
            statuses = await asyncio.gather(*(post(http, proc.port, proc.key) for _ in range(150)))
        spent = [_cpu_ticks(w) - b for w, b in zip(workers, before, strict=True)]
    finally:
        assert proc.stop() == 0
    assert statuses.count(200) == 100 and statuses.count(429) == 50
    assert all(s > 0 for s in spent), spent                    # both workers answered
    assert not any(Path(f"/proc/{w}").exists() for w in workers)
    assert sql(proc.db, "SELECT COUNT(*) FROM requests") == [(150,)]
    assert "Traceback" not in proc.log.read_text()


def test_workers_with_memory_limits_are_refused_in_one_line(tmp_path):
    config = tmp_path / "routes.yaml"
    config.write_text(ROUTES)
    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_LIMITS"}
    out = subprocess.run([sys.executable, "-m", "gateway", "serve", "--workers", "2", "--config", str(config),
                          "--db", str(tmp_path / "g.db")], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and "--workers 2 needs shared limits" in out.stderr
    bad = run_cli("serve", "--limits", "mysql://x", db=tmp_path / "g.db", config=config)
    assert bad.returncode == 1 and "--limits must be 'memory' or a Redis URL" in bad.stderr
    assert json.dumps(bad.stderr).count("\\n") == 1
