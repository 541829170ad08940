"""The memory limiter (the default): each key's windows and budget on its KeyState, in this process.

Exact because the request path is one event loop and nothing awaits between a check and its
booking (`KeyUsage.admit` in windows.py is synchronous). The counters are rebuilt from the
ledger by KeyRegistry.load.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.limiter.base import Limiter, Ticket

if TYPE_CHECKING:   # keys.py builds each key's counters from windows.py: a type here, not an import
    from gateway.keys import KeyState


class MemoryLimiter(Limiter):
    """Counters on each KeyState (`key.usage`), rebuilt from the ledger by KeyRegistry.load."""

    kind = "memory"

    async def admit(self, key: KeyState, now: float, prompt: int, worst: float) -> Ticket:
        row = key.row
        return key.usage.admit(now, row.rpm_limit, row.tpm_limit, row.max_budget, prompt, worst)

    async def reports(self, keys: list[KeyState], now: float) -> list[dict[str, Any]]:
        return [key.report(now) for key in keys]
