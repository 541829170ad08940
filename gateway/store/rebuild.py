"""The one ledger rebuild: what each key's windows and budget are rebuilt from after a restart.

The memory limiter's counters (KeyRegistry.load) and an empty Redis (the Redis limiter's rebuild)
are filled from the same read, so the two cannot disagree on what the ledger says.
"""
from __future__ import annotations

from dataclasses import dataclass

from gateway.store.base import Store, parse_utc_iso, utc_iso


@dataclass
class LedgerFacts:
    """The ledger's admissions since a window's start, and each key's spend per period and in all."""

    recent: list[tuple[str, float, int]]    # (key_id, admitted at, total tokens) since `since`
    day: dict[str, float]                   # key_id -> spend since day_start
    month: dict[str, float]                 # key_id -> spend since month_start
    total: dict[str, float]                 # key_id -> spend ever
    day_start: float
    month_start: float


async def read_ledger_facts(store: Store, since: float, day_start: float, month_start: float) -> LedgerFacts:
    """Admitted requests since `since` (refused ones count in no window), and spend since each start."""
    recent = [(key_id, parse_utc_iso(created_at), tokens or 0)
              for key_id, created_at, tokens in await store.recent_admissions(utc_iso(since))]
    day = await store.spend_since(utc_iso(day_start))
    month = await store.spend_since(utc_iso(month_start))
    return LedgerFacts(recent, day, month, await store.spend_total(), day_start, month_start)
