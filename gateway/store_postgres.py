"""The PostgreSQL store: one ledger and one key table shared by many gateway processes and machines.

A small asyncpg pool per process (the ledger writer, the key poll and the admin
API rarely need more than one connection each). A ledger batch is one COPY,
which PostgreSQL applies as one transaction: whole or not at all. Every asyncpg
and socket error that means "the server is not there" (refused, reset, shut
down, restarting, out of connections or disk) becomes `DatabaseUnavailable`
here, in one place: the ledger writer keeps its rows and retries, and the pool
opens fresh connections once the server answers again.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import asyncpg

from gateway.migrate import apply_postgres_migrations
from gateway.store import (KEY_COLUMNS, LEDGER_COLUMNS, DatabaseUnavailable, KeyRow, RowRefused, Store, key_changes,
                           key_values, ledger_values, redact_url, spend_sql)

POOL_MIN, POOL_MAX = 1, 4
CONNECT_TIMEOUT = 5.0      # a server that is away must not hold a request to /health or a ledger batch for long
COMMAND_TIMEOUT = 30.0
ACQUIRE_TIMEOUT = 10.0
_UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError)
_KEYS = ", ".join(KEY_COLUMNS)
# A row-level refusal: a value (class 22: a NUL, an untranslatable character, a number out of range, also
# asyncpg's own encoding check, a ValueError) or a constraint (class 23). Caught before _UNAVAILABLE, which
# holds asyncpg.InterfaceError, the base of that client-side DataError.
_REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ValueError, TypeError)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _refusal(exc: BaseException) -> str:
    """The kind of refusal and its SQLSTATE, never the message: that may quote the refused value."""
    state = getattr(exc, "sqlstate", None)
    return f"{type(exc).__name__} ({state})" if state else type(exc).__name__


class PostgresStore(Store):
    def __init__(self, pool: asyncpg.Pool, url: str):
        self.pool = pool
        self.where = redact_url(url)

    @classmethod
    async def open(cls, url: str) -> "PostgresStore":
        """Connect a small pool and apply pending migrations (one process at a time, under an advisory lock)."""
        try:
            pool = await asyncpg.create_pool(url, min_size=POOL_MIN, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT,
                                             command_timeout=COMMAND_TIMEOUT,
                                             server_settings={"application_name": "llm-gateway"})
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:   # also a missing database, a refused password
            raise DatabaseUnavailable(f"{redact_url(url)}: {_reason(exc)}") from None
        store = cls(pool, url)
        try:
            async with store._conn() as conn:
                await apply_postgres_migrations(conn)
        except BaseException:
            await store.close()
            raise
        return store

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; "the server is not there" leaves here as DatabaseUnavailable."""
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise DatabaseUnavailable(_reason(exc)) from None

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.pool.close(), CONNECT_TIMEOUT)
        except _UNAVAILABLE:
            self.pool.terminate()

    async def ping(self) -> bool:
        async with self._conn() as conn:
            return await conn.fetchval("SELECT 1") == 1

    # -- keys --------------------------------------------------------------
    async def create_key(self, **fields: Any) -> KeyRow:
        row = key_values(**fields)
        async with self._conn() as conn:
            await conn.execute(f"INSERT INTO api_keys ({_KEYS}) VALUES "
                               f"({', '.join(f'${i + 1}' for i in range(len(KEY_COLUMNS)))})", *row)
        return KeyRow.from_row(row)

    async def get_key(self, key_id: str) -> KeyRow | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"SELECT {_KEYS} FROM api_keys WHERE id = $1", key_id)
        return KeyRow.from_row(row) if row else None

    async def list_keys(self) -> list[KeyRow]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {_KEYS} FROM api_keys ORDER BY created_at, id")
        return [KeyRow.from_row(row) for row in rows]

    async def keys_version(self) -> int:
        """Bumped by a trigger in the same transaction as any change to api_keys (migration 0001)."""
        async with self._conn() as conn:
            return await conn.fetchval("SELECT version FROM api_keys_version")

    async def update_key(self, key_id: str, changes: dict[str, Any], now: str) -> KeyRow | None:
        fields = key_changes(changes, now)
        assignments = ", ".join(f"{k} = ${i + 1}" for i, k in enumerate(fields))
        async with self._conn() as conn:
            row = await conn.fetchrow(f"UPDATE api_keys SET {assignments} WHERE id = ${len(fields) + 1} "
                                      f"RETURNING {_KEYS}", *fields.values(), key_id)
        return KeyRow.from_row(row) if row else None

    # -- ledger ------------------------------------------------------------
    async def insert_rows(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        records = [ledger_values(r, strict) for r in rows]
        async with self._conn() as conn:
            try:
                await conn.copy_records_to_table("requests", records=records, columns=LEDGER_COLUMNS)
            except _REFUSED as exc:
                raise RowRefused(_refusal(exc)) from None

    async def recent_admissions(self, since: str) -> list[tuple[str, str, int]]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT key_id, created_at, total_tokens FROM requests "
                                    "WHERE created_at >= $1 AND status != 'rejected' ORDER BY created_at", since)
        return [tuple(row) for row in rows]

    async def spend_since(self, since: str) -> dict[str, float]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT key_id, SUM(cost_usd) FROM requests WHERE created_at >= $1 "
                                    "GROUP BY key_id", since)
        return {row[0]: row[1] or 0.0 for row in rows}

    async def spend(self, by: str, since: str | None = None) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            rows = await conn.fetch(spend_sql(by, since, "$1"), *(() if since is None else (since,)))
        return [dict(row) for row in rows]
