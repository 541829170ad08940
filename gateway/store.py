"""All SQL of the gateway: keys, the ledger, spend, and the facts limits are rebuilt from.

One aiosqlite connection in autocommit mode with explicit transactions; SQLite
in WAL mode so `sqlite3` users and the CLI can read while the server writes.
Writes take `_write_lock`, so a key written by the admin API never lands inside
(and never rolls back with) a ledger batch that is between BEGIN and COMMIT.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable

import aiosqlite
import orjson

from gateway.migrate import apply_migrations

LEDGER_COLUMNS = ("request_id", "key_id", "created_at", "route", "provider", "upstream_model", "stream", "status",
                  "http_status", "error_code", "prompt_tokens", "completion_tokens", "reasoning_tokens",
                  "total_tokens", "cost_usd", "latency_ms", "ttft_ms", "attempts", "usage_source")
# A whole batch travels as one JSON parameter of one statement: executemany would hand the GIL
# back and forth once per row, and under load the writer thread then starves for seconds.
_INSERT_LEDGER = (f"INSERT INTO requests ({', '.join(LEDGER_COLUMNS)}) SELECT "
                  + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(LEDGER_COLUMNS)))
                  + " FROM json_each(?)")
KEY_COLUMNS = ("id", "name", "key_prefix", "key_hash", "rpm_limit", "tpm_limit", "max_budget", "budget_period",
               "models", "created_at", "revoked_at", "updated_at")
SPEND_VIEWS = {"key": "spend_by_key", "model": "spend_by_model", "day": "spend_by_day"}
_SPEND_GROUPS = {
    "key": ("r.key_id AS key_id, k.name AS name", "r.key_id", "LEFT JOIN api_keys k ON k.id = r.key_id"),
    "model": ("r.route AS model", "r.route", ""),
    "day": ("substr(r.created_at, 1, 10) AS day", "substr(r.created_at, 1, 10)", ""),
}


def utc_iso(ts: float) -> str:
    """ISO-8601 UTC with milliseconds; sorts as text in time order."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class KeyRow:
    id: str
    name: str
    key_prefix: str
    key_hash: str
    rpm_limit: int
    tpm_limit: int
    max_budget: float
    budget_period: str
    models: list[str] | None
    created_at: str
    revoked_at: str | None
    updated_at: str

    @classmethod
    def from_row(cls, row: Iterable[Any]) -> "KeyRow":
        values = dict(zip(KEY_COLUMNS, row))
        values["models"] = json.loads(values["models"]) if values["models"] else None
        return cls(**values)

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "key_prefix": self.key_prefix, "rpm_limit": self.rpm_limit,
                "tpm_limit": self.tpm_limit, "max_budget": self.max_budget, "budget_period": self.budget_period,
                "models": self.models, "created_at": self.created_at, "revoked_at": self.revoked_at}


class Store:
    def __init__(self, db: aiosqlite.Connection):
        self.db = db
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> "Store":
        """Connect, set WAL, apply migrations; on failure no connection thread is left behind."""
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
    async def create_key(self, *, key_id: str, name: str, key_prefix: str, key_hash: str, rpm: int, tpm: int,
                         budget: float, period: str, models: list[str] | None, now: str) -> KeyRow:
        row = (key_id, name, key_prefix, key_hash, rpm, tpm, budget, period,
               json.dumps(models) if models is not None else None, now, None, now)
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

    async def data_version(self) -> int:
        """Changes when another connection (the CLI, a `sqlite3` user) commits to the database file."""
        async with self.db.execute("PRAGMA data_version") as cur:
            return (await cur.fetchone())[0]

    async def update_key(self, key_id: str, changes: dict[str, Any], now: str) -> KeyRow | None:
        allowed = {"name", "rpm_limit", "tpm_limit", "max_budget", "budget_period", "models", "revoked_at"}
        fields = {k: (json.dumps(v) if k == "models" and v is not None else v)
                  for k, v in changes.items() if k in allowed}
        fields["updated_at"] = now
        assignments = ", ".join(f"{k} = ?" for k in fields)
        async with self._write_lock:
            cur = await self.db.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?",
                                        (*fields.values(), key_id))
        if cur.rowcount == 0:
            return None
        return await self.get_key(key_id)

    # -- ledger ------------------------------------------------------------
    async def insert_rows(self, rows: list[dict[str, Any]]) -> None:
        """One transaction per batch: a batch is written whole or not at all."""
        batch = orjson.dumps([[r.get(c) for c in LEDGER_COLUMNS] for r in rows]).decode()
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                await self.db.execute(_INSERT_LEDGER, (batch,))
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise

    async def recent_admissions(self, since: str) -> list[tuple[str, str, int]]:
        """(key_id, created_at, total_tokens) of admitted requests since `since`, for the windows."""
        async with self.db.execute("SELECT key_id, created_at, total_tokens FROM requests "
                                   "WHERE created_at >= ? AND status != 'rejected' ORDER BY created_at",
                                   (since,)) as cur:
            return [tuple(row) async for row in cur]

    async def spend_since(self, since: str) -> dict[str, float]:
        async with self.db.execute("SELECT key_id, SUM(cost_usd) FROM requests WHERE created_at >= ? "
                                   "GROUP BY key_id", (since,)) as cur:
            return {row[0]: row[1] or 0.0 async for row in cur}

    async def spend_total(self) -> dict[str, float]:
        return await self.spend_since("")

    async def spend(self, by: str, since: str | None = None) -> list[dict[str, Any]]:
        """Rows of the `spend_by_*` view; with `since`, the same grouping over the later rows only."""
        if since is None:
            sql, params = f"SELECT * FROM {SPEND_VIEWS[by]}", ()
        else:
            columns, group, join = _SPEND_GROUPS[by]
            sql = (f"SELECT {columns}, COUNT(*) AS requests, SUM(r.prompt_tokens) AS prompt_tokens, "
                   f"SUM(r.completion_tokens) AS completion_tokens, SUM(r.cost_usd) AS cost_usd "
                   f"FROM requests r {join} WHERE r.created_at >= ? GROUP BY {group}")
            params = (since,)
        async with self.db.execute(sql + " ORDER BY cost_usd DESC, requests DESC" if by != "day"
                                   else sql + " ORDER BY day", params) as cur:
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) async for row in cur]


def is_date(text: str) -> bool:
    """A `since` filter: a real calendar date written YYYY-MM-DD."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return False
    try:
        datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def new_secret() -> str:
    return "sk-" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)
