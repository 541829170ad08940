"""SIGTERM during load loses no ledger row (SPEC sections 7 and 9): a real `gateway serve` process."""
from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys

import aiohttp
import pytest

from gateway.store import is_postgres_url
from tests.conftest import BOTH_DBS
from tests.pg import query as pg_query
from tests.procs import free_port

ROUTES = """
providers:
  slow: {dialect: mock, chunk_delay_ms: 40}
routes:
  demo:
    targets: [{provider: slow, model: chat, price: {input: 1.0, output: 1.0}}]
"""
IN_FLIGHT, LATE = 40, 20


async def until_healthy(http: aiohttp.ClientSession, url: str, proc) -> None:
    for _ in range(200):
        assert proc.returncode is None, "the server exited during startup"
        try:
            async with http.get(f"{url}/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the server did not come up")


async def count_by_status(db) -> dict[str, int]:
    sql = "SELECT status, COUNT(*) AS n FROM requests GROUP BY status"
    if is_postgres_url(str(db)):
        return {r["status"]: r["n"] for r in await pg_query(str(db), sql)}
    con = sqlite3.connect(db)
    try:
        return dict(con.execute(sql).fetchall())
    finally:
        con.close()


@BOTH_DBS
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_during_load_loses_no_row(tmp_path, stop, db_kind, pg_databases):
    config, log = tmp_path / "routes.yaml", tmp_path / "server.log"
    db = tmp_path / "gateway.db" if db_kind == "sqlite" else await pg_databases.url()
    config.write_text(ROUTES)
    created = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "keys", "create", "--name", "load", "--rpm", "1000", "--json", "--db", str(db),
        "--config", str(config), stdout=asyncio.subprocess.PIPE)
    secret = json.loads((await created.communicate())[0])["key"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", "--config", str(config), "--db", str(db), "--port", str(port),
            stdout=out, stderr=out, cwd=tmp_path)
    headers = {"Authorization": f"Bearer {secret}"}
    body = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = asyncio.Event()
    open_streams = 0

    async def one(http: aiohttp.ClientSession, first_wave: bool) -> str | None:
        """The answer's fate: 'whole', 'cut' (reached the gateway) or None (never reached it)."""
        nonlocal open_streams
        try:
            async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
                assert resp.status == 200
                if first_wave:
                    open_streams += 1
                    if open_streams == IN_FLIGHT:
                        started.set()
                try:
                    raw = await resp.read()
                except aiohttp.ClientError:
                    return "cut"
                return "whole" if raw.endswith(b"data: [DONE]\n\n") else "cut"
        except aiohttp.ClientError:
            assert not first_wave, "a request already streaming lost its answer"
            return None

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        try:
            await until_healthy(http, url, proc)
            first = [asyncio.create_task(one(http, True)) for _ in range(IN_FLIGHT)]
            await asyncio.wait_for(started.wait(), 5)          # every stream is mid-answer now
            proc.send_signal(stop)
            late = [asyncio.create_task(one(http, False)) for _ in range(LATE)]
            fates = await asyncio.gather(*first, *late)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    reached = [f for f in fates if f is not None]
    assert fates[:IN_FLIGHT].count(None) == 0 and len(reached) >= IN_FLIGHT
    statuses = await count_by_status(db)
    assert sum(statuses.values()) == len(reached), (statuses, fates)
    assert set(statuses) <= {"ok", "cancelled"}
    assert statuses.get("ok", 0) >= fates.count("whole")
    text = log.read_text()
    assert "Traceback" not in text and secret not in text
