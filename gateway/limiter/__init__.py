"""The limiter: where every key's RPM/TPM windows and budget live, behind one interface.

`memory` (the default) keeps them in this process (memory.py, over the pure windows and budgets
of windows.py): exact because the request path is one event loop and nothing awaits between a
check and its booking, and the fastest choice for one process. `redis://...` keeps them in
Redis (redis.py), checked and booked by one server-side script (lua.py) per admission and one
per settlement, pipelined (pipe.py), so any number of processes and machines share exact
limits. Both refuse with the same errors and answer the same rate-limit headers, built in
windows.py. The interface, its errors and the limiter URL are in base.py.

Importing the package loads windows.py only: the key registry (gateway/keys.py) counts with it, and
`gateway keys list` needs nothing more. The interface, the memory limiter and the URL checks load on
first use (`__getattr__`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy
from gateway.limiter.windows import DAY, SPAN, Admission, Budget, KeyUsage, Window, period_start

if TYPE_CHECKING:
    from gateway.clock import Clock
    from gateway.limiter.base import (
        FactsSource,
        Limiter,
        LimiterUnavailable,
        Ticket,
        check_limiter_url,
        describe,
        ledger_facts,
    )
    from gateway.limiter.memory import MemoryLimiter
    from gateway.store import LedgerFacts

__all__ = ["DAY", "SPAN", "Admission", "Budget", "FactsSource", "KeyUsage", "LedgerFacts", "Limiter",
           "LimiterUnavailable", "MemoryLimiter", "Ticket", "Window", "check_limiter_url", "describe",
           "ledger_facts", "open_limiter", "period_start"]
_LAZY = {**dict.fromkeys(("FactsSource", "Limiter", "LimiterUnavailable", "Ticket", "check_limiter_url", "describe",
                          "ledger_facts"), "gateway.limiter.base"),
         "MemoryLimiter": "gateway.limiter.memory", "LedgerFacts": "gateway.store"}

__getattr__ = lazy(__name__, _LAZY, globals())


def open_limiter(url: str, fallback: str, clock: Clock, facts: FactsSource) -> Limiter:
    """`memory`, or a Redis URL (checked by check_limiter_url); `fallback` is settings.limiter_fallback."""
    if url == "memory":
        from gateway.limiter.memory import MemoryLimiter
        return MemoryLimiter()
    from gateway.limiter.redis import RedisLimiter  # only when asked for: redis-py takes ~250 ms to import
    return RedisLimiter(url, fallback == "memory", clock, facts)
