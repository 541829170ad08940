"""Admission plus settlement alone, no HTTP: the memory limiter against the Redis one.

usage: admission.py memory | redis://HOST:PORT/DB   (the Redis db is flushed first)

One caller alone (the latency of one admission: with Redis, one round trip), then 32 keys and
32 concurrent callers, each admitting then settling in a loop, as 32 busy clients would; prints
this process's CPU per admission+settlement and the admission latency seen by the caller (with
Redis, calls made while a round trip is on the wire share the next one).
"""
from __future__ import annotations

import asyncio
import sys
import time

from gateway.clock import Clock
from gateway.keys import KeyState
from gateway.limiter import Budget, KeyUsage, LedgerFacts, open_limiter
from gateway.store import KeyRow


async def no_ledger(now: float) -> LedgerFacts:
    return LedgerFacts([], {}, {}, {}, 0.0, 0.0)


async def measure(url: str, total: int, conc: int) -> None:
    if url != "memory":
        import redis.asyncio as aioredis
        client = aioredis.Redis.from_url(url)
        await client.flushdb()
        await client.aclose()
    clock = Clock()
    limiter = open_limiter(url, "refuse", clock, no_ledger)
    await limiter.start()
    keys = [KeyState(KeyRow(f"key_{i}", "bench", "sk-", f"h{i}", 10**9, 10**12, 1e9, "monthly", None, "", None, ""),
                     KeyUsage(Budget("monthly"))) for i in range(conc)]
    latency: list[float] = []

    async def caller(key: KeyState) -> None:
        for _ in range(total // conc):
            began = time.perf_counter()
            ticket = await limiter.admit(key, clock.now(), 12, 0.0001)
            latency.append(time.perf_counter() - began)
            ticket.settle(clock.now(), 40, 0.00002)
            await asyncio.sleep(0)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller(k) for k in keys))
    await limiter.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latency.sort()
    name = "memory" if url == "memory" else "redis"
    print(f"- {name}: {cpu / total * 1e6:.1f} us CPU per admission+settlement in the gateway process; "
          f"admission latency p50 {latency[len(latency) // 2] * 1e6:.0f} us, p99 "
          f"{latency[int(len(latency) * 0.99)] * 1e6:.0f} us at {conc} concurrent caller{'s' if conc > 1 else ''} "
          f"({total / wall:.0f} admissions/s from one process)")


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(measure(sys.argv[1], 5000, 1))
    asyncio.run(measure(sys.argv[1], 20000, 32))
