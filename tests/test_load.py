"""Load against a real gateway process: no errors, flat memory, many open streams at once."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.procs import GatewayProcess

pytestmark = pytest.mark.alone   # its own load and memory, with no other test beside it (tests/parallel.py)

BODY = json.dumps({"model": "demo", "messages": [{"role": "user", "content": "hello there"}]}).encode()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _blast(url: str, key: str, total: int, concurrency: int, body: bytes = BODY) -> dict[int, int]:
    statuses: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        left = iter(range(total))

        async def worker() -> None:
            for _ in left:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


async def test_20k_requests_at_c100_without_error_and_flat_memory(tmp_path):
    gw = GatewayProcess(tmp_path).start()
    try:
        url = f"http://127.0.0.1:{gw.port}/v1/chat/completions"
        assert await _blast(url, gw.key, 4_000, 100) == {200: 4_000}      # warm-up
        first = await _blast(url, gw.key, 6_000, 100)
        await asyncio.sleep(0.3)       # let the ledger drain: its buffer is bounded, not part of the steady state
        at_10k = rss_kb(gw.proc.pid)
        second = await _blast(url, gw.key, 10_000, 100)
        await asyncio.sleep(0.3)
        at_20k = rss_kb(gw.proc.pid)
        assert first == {200: 6_000} and second == {200: 10_000}
        assert at_20k <= at_10k * 1.10, (at_10k, at_20k)
    finally:
        assert gw.stop() == 0
    assert gw.rows()[0][0] == 20_000
    assert "Traceback" not in gw.log.read_text()


async def test_1000_concurrent_open_streams(tmp_path):
    gw = GatewayProcess(tmp_path, delay_ms=50).start()   # 22 chunks x 50 ms: every stream is open for > 1 s
    body = json.dumps({"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]}).encode()
    headers = {"Authorization": f"Bearer {gw.key}", "Content-Type": "application/json"}
    peak = 0
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            async def one() -> bool:
                async with session.post(f"http://127.0.0.1:{gw.port}/v1/chat/completions", data=body,
                                        headers=headers) as resp:
                    raw = await resp.read()
                    return resp.status == 200 and raw.endswith(b"data: [DONE]\n\n")

            tasks = [asyncio.create_task(one()) for _ in range(1_000)]
            while not all(t.done() for t in tasks):
                peak = max(peak, rss_kb(gw.proc.pid))
                await asyncio.sleep(0.05)
            results = [t.result() for t in tasks]
        assert all(results), results.count(False)
        assert peak < 250 * 1024, f"peak RSS {peak / 1024:.0f} MB"
    finally:
        gw.stop()
    assert gw.rows()[0][0] == 1_000
