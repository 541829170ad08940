"""The SQLite store (the default): one file, one process writing, any number reading.

One aiosqlite connection in autocommit mode with explicit transactions; SQLite
in WAL mode so `sqlite3` users and the CLI can read while the server writes.
A database file it creates is 0600 (SPEC section 9): SQLite gives the -wal and
-shm files the mode of the database file, so they are private too.
Writes take `_write_lock`, so a key written by the admin API never lands inside
(and never rolls back with) a ledger batch that is between BEGIN and COMMIT.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import Any

import aiosqlite
import orjson

from gateway.migrate import apply_migrations
from gateway.store import (KEY_COLUMNS, LEDGER_COLUMNS, KeyRow, RowRefused, Store, key_changes, key_values,
                           ledger_values, spend_sql)

# A whole batch travels as one JSON parameter of one statement: executemany would hand the GIL
# back and forth once per row, and under load the writer thread then starves for seconds.
_INSERT_LEDGER = (f"INSERT INTO requests ({', '.join(LEDGER_COLUMNS)}) SELECT "
                  + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(LEDGER_COLUMNS)))
                  + " FROM json_each(?)")


_REFUSED = (sqlite3.IntegrityError, sqlite3.DataError)


def _create_private(path: str) -> None:
    """Create a missing database file readable by its owner only, before SQLite creates it 0644.

    An existing file keeps its mode (an operator may have chosen one); a path that cannot be
    opened is left for SQLite to refuse in its own words.
    """
    if path in ("", ":memory:") or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        pass


class SqliteStore(Store):
    def __init__(self, db: aiosqlite.Connection):
        self.db = db
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> "SqliteStore":
        """Connect, set WAL, apply migrations; on failure no connection thread is left behind."""
        _create_private(path)
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error:
            await asyncio.sleep(0.05)   # aiosqlite stops its thread itself; let that land while the loop runs
            raise
        try:
            await db.execute("PRAGMA busy_timeout=5000")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
            await apply_migrations(db)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> bool:
        async with self.db.execute("SELECT 1") as cur:
            return (await cur.fetchone()) == (1,)

    # -- keys --------------------------------------------------------------
    async def create_key(self, **fields: Any) -> KeyRow:
        row = key_values(**fields)
        async with self._write_lock:
            await self.db.execute(f"INSERT INTO api_keys ({', '.join(KEY_COLUMNS)}) VALUES "
                                  f"({', '.join('?' for _ in KEY_COLUMNS)})", row)
        return KeyRow.from_row(row)

    async def get_key(self, key_id: str) -> KeyRow | None:
        async with self.db.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys WHERE id = ?", (key_id,)) as cur:
            row = await cur.fetchone()
        return KeyRow.from_row(row) if row else None

    async def list_keys(self) -> list[KeyRow]:
        async with self.db.execute(f"SELECT {', '.join(KEY_COLUMNS)} FROM api_keys ORDER BY created_at, id") as cur:
            return [KeyRow.from_row(row) async for row in cur]

    async def keys_version(self) -> int:
        """SQLite's data_version: changes when another connection (the CLI, a `sqlite3` user) commits."""
        async with self.db.execute("PRAGMA data_version") as cur:
            return (await cur.fetchone())[0]

    async def update_key(self, key_id: str, changes: dict[str, Any], now: str) -> KeyRow | None:
        fields = key_changes(changes, now)
        assignments = ", ".join(f"{k} = ?" for k in fields)
        async with self._write_lock:
            cur = await self.db.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?",
                                        (*fields.values(), key_id))
        if cur.rowcount == 0:
            return None
        return await self.get_key(key_id)

    # -- ledger ------------------------------------------------------------
    async def insert_rows(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        try:
            batch = orjson.dumps([ledger_values(r, strict) for r in rows]).decode()
        except orjson.JSONEncodeError as exc:
            raise RowRefused(type(exc).__name__) from None
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                await self.db.execute(_INSERT_LEDGER, (batch,))
                await self.db.execute("COMMIT")
            except BaseException as exc:
                await self.db.execute("ROLLBACK")
                if isinstance(exc, _REFUSED):   # a CHECK, NOT NULL or foreign key; a value too big
                    raise RowRefused(f"{type(exc).__name__} ({exc.sqlite_errorname})") from None
                raise                           # locked, disk full, I/O: the writer keeps the rows

    async def recent_admissions(self, since: str) -> list[tuple[str, str, int]]:
        async with self.db.execute("SELECT key_id, created_at, total_tokens FROM requests "
                                   "WHERE created_at >= ? AND status != 'rejected' ORDER BY created_at",
                                   (since,)) as cur:
            return [tuple(row) async for row in cur]

    async def spend_since(self, since: str) -> dict[str, float]:
        async with self.db.execute("SELECT key_id, SUM(cost_usd) FROM requests WHERE created_at >= ? "
                                   "GROUP BY key_id", (since,)) as cur:
            return {row[0]: row[1] or 0.0 async for row in cur}

    async def spend(self, by: str, since: str | None = None) -> list[dict[str, Any]]:
        async with self.db.execute(spend_sql(by, since, "?"), () if since is None else (since,)) as cur:
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) async for row in cur]
