"""What every limiter keeps: the interface, its refusal when Redis is away, and the limiter URL.

`memory.py` and `redis.py` implement `Limiter`; `open_limiter` (gateway/limiter/__init__.py) picks
one by URL. The ledger facts a limiter is rebuilt from come through `ledger_facts`.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from gateway.errors import ServiceUnavailable
from gateway.limiter.windows import rebuild_from
from gateway.store import LedgerFacts, Store, read_ledger_facts

if TYPE_CHECKING:   # keys.py builds each key's counters from windows.py: a type here, not an import
    from gateway.keys import KeyState

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


FactsSource = Callable[[float], Awaitable[LedgerFacts]]


def ledger_facts(store: Store, flush: Callable[[], Awaitable[None]]) -> FactsSource:
    """The one ledger rebuild (gateway/store/rebuild.py), read after this process's own rows were flushed."""

    async def read(now: float) -> LedgerFacts:
        await flush()
        return await read_ledger_facts(store, *rebuild_from(now))

    return read
