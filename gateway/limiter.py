"""The limiter: where every key's RPM/TPM windows and budget live, behind one interface.

`memory` (the default) keeps them in this process (gateway/limits.py): exact because the
request path is one event loop and nothing awaits between a check and its booking, and the
fastest choice for one process. `redis://...` keeps them in Redis, checked and booked by one
server-side script per admission and one per settlement, so any number of processes and
machines share exact limits (gateway/limiter_redis.py). Both refuse with the same errors and
answer the same rate-limit headers, built in gateway/limits.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol
from urllib.parse import urlsplit

from gateway.clock import Clock
from gateway.errors import ServiceUnavailable
from gateway.keys import KeyState
from gateway.limits import SPAN, period_start
from gateway.store import utc_iso

SCHEMES = ("redis", "rediss", "unix")


class LimiterUnavailable(ServiceUnavailable):
    code = "limiter_unavailable"

    def __init__(self) -> None:
        super().__init__("The gateway's rate limiter (Redis) does not answer, so no request can be admitted; "
                         "retry shortly.", headers={"retry-after": "1"})


class Ticket(Protocol):
    """What an admitted request holds until it ends."""

    headers: dict[str, str]

    def settle(self, now: float, tokens: int, cost: float) -> None:
        """Swap the prompt estimate for the real tokens and the reserved worst case for the real cost."""


class Limiter:
    """The interface both implementations keep."""

    kind = "?"

    async def start(self) -> None:
        """Connect, and rebuild shared state from the ledger when there is none."""

    async def admit(self, key: KeyState, now: float, prompt: int, worst: float) -> Ticket:
        """Raise a 429 (RateLimited, BudgetExceeded) or a 503 (LimiterUnavailable), or book the request."""
        raise NotImplementedError

    async def reports(self, keys: list[KeyState], now: float) -> list[dict[str, Any]]:
        """Each key's public fields and usage (rpm_used, tpm_used, spend_period, spend_total)."""
        raise NotImplementedError

    def status(self) -> dict[str, float]:
        """For /metrics: up (1/0), failures, fallback admissions, settlements waiting for Redis."""
        return {"up": 1.0, "failures": 0.0, "fallback_admissions": 0.0, "pending_settlements": 0.0}

    async def close(self) -> None:
        """Wait for settlements in flight, then disconnect."""


class MemoryLimiter(Limiter):
    """Counters on each KeyState (`key.usage`), rebuilt from the ledger by KeyRegistry.load."""

    kind = "memory"

    async def admit(self, key: KeyState, now: float, prompt: int, worst: float) -> Ticket:
        row = key.row
        return key.usage.admit(now, row.rpm_limit, row.tpm_limit, row.max_budget, prompt, worst)

    async def reports(self, keys: list[KeyState], now: float) -> list[dict[str, Any]]:
        return [key.report(now) for key in keys]


def check_limiter_url(value: str) -> str:
    """`memory` or a Redis URL; anything else is a config or command-line error."""
    if value == "memory":
        return value
    if "://" in value and value.split("://", 1)[0] in SCHEMES:
        from redis.connection import parse_url
        try:
            parse_url(value)       # the client's own reading: a bad port or option fails here, not at start
            parts = urlsplit(value)
            if parts.scheme == "unix" or parts.hostname:
                return value
        except ValueError:
            pass
    raise ValueError("must be 'memory' or a Redis URL such as redis://127.0.0.1:6379/0")


def describe(url: str) -> str:
    """The URL without its password, for log lines."""
    if url == "memory":
        return url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path or ''}"


@dataclass
class LedgerFacts:
    """What the windows and budgets are rebuilt from: the ledger's last minute and period spend."""

    recent: list[tuple[str, float, int]]    # (key_id, admitted at, total tokens) of the last SPAN seconds
    day: dict[str, float]
    month: dict[str, float]
    total: dict[str, float]
    day_start: float
    month_start: float


FactsSource = Callable[[float], Awaitable[LedgerFacts]]


def ledger_facts(store: Any, flush: Callable[[], Awaitable[None]]) -> FactsSource:
    """Facts read from the store after this process's own ledger rows were flushed."""
    from gateway.keys import _parse_iso

    async def read(now: float) -> LedgerFacts:
        await flush()
        day, month = period_start("daily", now), period_start("monthly", now)
        recent = [(key_id, _parse_iso(created_at), tokens or 0)
                  for key_id, created_at, tokens in await store.recent_admissions(utc_iso(now - SPAN))]
        return LedgerFacts(recent, await store.spend_since(utc_iso(day)), await store.spend_since(utc_iso(month)),
                           await store.spend_total(), day, month)

    return read


def open_limiter(url: str, fallback: str, clock: Clock, facts: FactsSource) -> Limiter:
    if url == "memory":
        return MemoryLimiter()
    from gateway.limiter_redis import RedisLimiter
    return RedisLimiter(url, fallback == "memory", clock, facts)
