"""The store: keys, the ledger, spend, and the facts limits are rebuilt from, behind one interface.

Two implementations, chosen by the database URL given to `open_store`: a SQLite file (the
default, sqlite.py) or `postgresql://...` (postgres.py, for several processes or machines
sharing one ledger). Both keep the SPEC section 7 names and columns, with `created_at` as
ISO-8601 UTC text, so the same SQL answers in `sqlite3` and in `psql`; both raise the same
two errors (`DatabaseUnavailable`: retry later; `RowRefused`: this row, never). All SQL lives
in base.py, the two drivers, and `migrations/` (applied by migrate.py); the same test suite
runs against both (`tests/test_store.py`), so they cannot drift apart. ledger.py is the
batched writer of the ledger; rebuild.py the one read windows and budgets are rebuilt from; rollup.py
the spend roll-ups (per day, key and route) that spend is read from, so it costs keys x days, not rows.

The ledger writer and the rebuild load on first use (`__getattr__`): `gateway spend` and `keys list` run
without the one and `spend` without the other, and each module a command imports is part of its start-up.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.lazy import lazy
from gateway.store.base import (
    KEY_COLUMNS,
    LEDGER_COLUMNS,
    DatabaseUnavailable,
    KeyRow,
    RowRefused,
    Store,
    is_date,
    is_postgres_url,
    ledger_values,
    new_key_id,
    new_secret,
    parse_utc_iso,
    redact_url,
    utc_iso,
)

if TYPE_CHECKING:
    from gateway.store.ledger import LedgerWriter, NullLedger
    from gateway.store.rebuild import LedgerFacts, read_ledger_facts

__all__ = ["KEY_COLUMNS", "LEDGER_COLUMNS", "DatabaseUnavailable", "KeyRow", "LedgerFacts", "LedgerWriter",
           "NullLedger", "RowRefused", "Store", "is_date", "is_postgres_url", "ledger_values", "new_key_id",
           "new_secret", "open_store", "parse_utc_iso", "read_ledger_facts", "redact_url", "utc_iso"]
_LAZY = {"LedgerWriter": "gateway.store.ledger", "NullLedger": "gateway.store.ledger",
         "LedgerFacts": "gateway.store.rebuild", "read_ledger_facts": "gateway.store.rebuild"}

__getattr__ = lazy(__name__, _LAZY, globals())


async def open_store(url: str, read_only: bool = False) -> Store:
    """Connect and apply pending migrations: `postgresql://...` or a SQLite file path.

    `read_only` (SQLite): open an existing file without writing to it, for the CLI's reports on a
    file or folder the user may not write. Only the driver asked for is imported (asyncpg takes a
    while to import)."""
    if is_postgres_url(url):
        from gateway.store.postgres import PostgresStore
        return await PostgresStore.open(url)
    from gateway.store.sqlite import SqliteStore
    return await SqliteStore.open(url, read_only)
