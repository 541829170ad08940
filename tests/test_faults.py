"""Faults: SIGKILL loses at most the batching window, a locked database stalls no request."""
from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

import aiohttp

from tests.procs import GatewayProcess
from tests.test_load import BODY, _blast


async def _count_while(gw: GatewayProcess, seconds: float, concurrency: int = 20) -> int:
    """Send requests for `seconds`; return how many got a 200."""
    url = f"http://127.0.0.1:{gw.port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {gw.key}", "Content-Type": "application/json"}
    ok = 0
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            nonlocal ok
            while time.monotonic() < deadline:
                async with session.post(url, data=BODY, headers=headers) as resp:
                    await resp.read()
                    ok += resp.status == 200
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


async def test_sigkill_loses_at_most_the_batch_window_and_restarts_clean(tmp_path):
    gw = GatewayProcess(tmp_path).start()
    answered = await _count_while(gw, 1.5)
    gw.stop(signal.SIGKILL)
    rows = gw.rows()[0][0]
    lost = answered - rows
    # the writer flushes every 50 ms: what is lost is what was answered in the last window
    assert 0 <= lost <= max(answered * 0.1, 200), (answered, rows)
    con = sqlite3.connect(gw.db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    gw.start()
    try:
        assert await _blast(f"http://127.0.0.1:{gw.port}/v1/chat/completions", gw.key, 50, 10) == {200: 50}
    finally:
        assert gw.stop() == 0
    assert gw.rows()[0][0] == rows + 50


async def test_locked_database_keeps_requests_flowing_and_rows_arrive_later(tmp_path):
    gw = GatewayProcess(tmp_path).start()
    try:
        lock = sqlite3.connect(gw.db, timeout=0, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")           # longer than the writer's 5 s busy timeout
        started = time.monotonic()
        answered = await _count_while(gw, 6.5, concurrency=4)
        assert answered > 100
        lock.execute("ROLLBACK")
        lock.close()
        deadline = time.monotonic() + 10
        while gw.rows()[0][0] < answered and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert gw.rows()[0][0] == answered, "rows kept while the database was locked were written later"
        assert time.monotonic() - started < 20
    finally:
        assert gw.stop() == 0
    log = gw.log.read_text()
    assert "ledger write failed" in log and "ledger writes recovered" in log
