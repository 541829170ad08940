"""Stream probes wrk cannot make: time to the first streamed chunk, and many streams held open.

usage:
  probe.py ttfc BASE_URL KEY MODEL COUNT         one stream at a time; p50/p99 ms to the first chunk
  probe.py hold BASE_URL KEY MODEL COUNT PID     COUNT streams at once; RSS of PID while they are open

Each prints one JSON line. BASE_URL ends before /v1 (e.g. http://127.0.0.1:18181).
"""
from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

import aiohttp


def _body(model: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()


def _headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def ttfc(base: str, key: str, model: str, count: int) -> dict:
    url, body, headers = f"{base}/v1/chat/completions", _body(model), _headers(key)
    times, bad = [], 0
    async with aiohttp.ClientSession() as http:
        for i in range(count + 20):   # the first 20 warm the connection and both processes
            began = time.perf_counter()
            async with http.post(url, data=body, headers=headers) as resp:
                first = await resp.content.readany()
                took = time.perf_counter() - began
                rest = await resp.read()
            if resp.status != 200 or not first.startswith(b"data: ") or not (first + rest).endswith(b"[DONE]\n\n"):
                bad += 1
            elif i >= 20:
                times.append(took * 1000)
    return {"count": len(times), "bad": bad, "p50_ms": statistics.median(times) if times else None,
            "p99_ms": _percentile(times, 0.99) if times else None}


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Held:
    def __init__(self, count: int):
        self.count, self.open, self.open_max, self.first, self.done, self.errors = count, 0, 0, 0, 0, []
        self.all_first_at: float | None = None


async def _one(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict, held: Held) -> None:
    try:
        async with http.post(url, data=body, headers=headers) as resp:
            first = await resp.content.readany()
            if resp.status != 200 or not first.startswith(b"data: "):
                held.errors.append(f"{resp.status} {first[:120]!r}")
                return
            held.first += 1
            held.open += 1
            held.open_max = max(held.open_max, held.open)
            if held.first == held.count:
                held.all_first_at = time.perf_counter()
            rest = await resp.read()
            held.open -= 1
            if (first + rest).endswith(b"data: [DONE]\n\n"):
                held.done += 1
            else:
                held.errors.append(f"unfinished {rest[-80:]!r}")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        held.errors.append(type(exc).__name__)


async def hold(base: str, key: str, model: str, count: int, pid: int) -> dict:
    url, body, headers = f"{base}/v1/chat/completions", _body(model), _headers(key)
    held = Held(count)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        began = time.perf_counter()
        tasks = [asyncio.create_task(_one(http, url, body, headers, held)) for _ in range(count)]
        rss_max = 0
        while not all(t.done() for t in tasks):
            rss_max = max(rss_max, _rss_kb(pid))
            await asyncio.sleep(0.2)
        await asyncio.gather(*tasks)
    all_first = round(held.all_first_at - began, 2) if held.all_first_at else None
    return {"streams": count, "first_ok": held.first, "done_ok": held.done, "open_max": held.open_max,
            "rss_max_mb": round(rss_max / 1024, 1), "errors": len(held.errors), "error_sample": held.errors[:3],
            "all_first_s": all_first}


def main(argv: list[str]) -> None:
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    kind, base, key, model, count = argv[1], argv[2], argv[3], argv[4], int(argv[5])
    if kind == "ttfc":
        result = asyncio.run(ttfc(base, key, model, count))
    else:
        result = asyncio.run(hold(base, key, model, count, int(argv[6])))
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv)
