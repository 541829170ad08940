"""Existing ledgers are upgraded in place: a database made by a previous schema (before the cached-token
columns of 0003, or before the spend roll-ups of 0005; rows written as the gateway then wrote them) opens
under the current one on SQLite and PostgreSQL, every row kept with every value, the new columns at their
defaults, the roll-ups built from its rows so the spend views and the facts budgets are rebuilt from
equal the sums over every row; and the upgraded ledger takes new rows at once, of any key (0007 drops the
check against `api_keys`).
"""
from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest

from gateway.keys import KeyRegistry
from gateway.store import is_postgres_url, open_store, utc_iso
from gateway.store.migrate import _PG_LOCK, _statements, apply_postgres_migrations, migration_files
from tests.pg import to_dollar_params
from tests.test_rollups import COUNTED, SUMS, VIEW_COLUMNS, same

OLD_COLUMNS = ("request_id", "key_id", "created_at", "route", "provider", "upstream_model", "stream", "status",
               "http_status", "error_code", "prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens",
               "cost_usd", "latency_ms", "ttft_ms", "attempts", "usage_source")
DAY = 86_400.0
T0 = 1_715_000_000.0     # 2024-05-06


def old_rows(n: int) -> list[tuple]:
    """Rows as the previous gateway wrote them: three keys, two routes (and refusals without one), 20 days."""
    rows = []
    for i in range(n):
        status = ("ok", "ok", "error", "rejected", "cancelled")[i % 5]
        route = None if status == "rejected" and i % 2 else ("gpt", "claude")[i % 2]
        prompt, completion = (0, 0) if status == "rejected" else (10 + i % 97, i % 31)
        rows.append((f"req-{i}", f"key_{i % 3}", utc_iso(T0 + (i % 20) * DAY + i), route, "up", "m", i % 2, status,
                     200, None, prompt, completion, None, prompt + completion, (prompt + 2 * completion) / 1e6,
                     12.5, None, 1, "upstream"))
    return rows


async def sql(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    if is_postgres_url(url):
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(to_dollar_params(statement), *params)]
        finally:
            await conn.close()
    con = sqlite3.connect(url)
    try:
        return con.execute(statement, params).fetchall()
    finally:
        con.close()


async def previous_schema_database(url: str, rows: list[tuple], previous: str) -> None:
    """The database a previous gateway made: its migration files only (those before `previous`), applied
    as its runner did, and rows as it wrote them."""
    old = [(name, text) for name, text in migration_files("postgres" if is_postgres_url(url) else "sqlite")
           if name < previous]
    keys = [(f"key_{k}", f"k{k}", f"sk-{k}", f"hash{k}", 100, 1000, 10.0, "never", None, utc_iso(T0), None,
             utc_iso(T0)) for k in range(3)]
    insert_keys = f"INSERT INTO api_keys VALUES ({', '.join('?' * 12)})"
    insert_rows = f"INSERT INTO requests ({', '.join(OLD_COLUMNS)}) VALUES ({', '.join('?' * len(OLD_COLUMNS))})"
    if is_postgres_url(url):
        conn = await asyncpg.connect(url)
        try:
            for name, text in old:
                await conn.execute(text)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
            await conn.executemany(to_dollar_params(insert_keys), keys)
            await conn.executemany(to_dollar_params(insert_rows), rows)
        finally:
            await conn.close()
        return
    con = sqlite3.connect(url, isolation_level=None)
    try:
        for name, text in old:
            for statement in _statements(text):
                con.execute(statement)
            con.execute("INSERT INTO schema_migrations (version) VALUES (?)", (name,))
        con.executemany(insert_keys, keys)
        con.execute("BEGIN")
        con.executemany(insert_rows, rows)
        con.execute("COMMIT")
    finally:
        con.close()


VIEWS = {"spend_by_key": "key_id", "spend_by_model": "model", "spend_by_day": "day"}


async def view_sums(url: str) -> dict[str, list[tuple]]:
    out = {}
    for view, first in VIEWS.items():
        found = await sql(url, f"SELECT {first}, requests, prompt_tokens, completion_tokens, cost_usd FROM {view}")
        out[view] = sorted(((r[0], r[1], r[2], r[3], round(r[4], 9)) for r in found), key=str)
    return out


def admitted_sums(rows: list[tuple]) -> dict[str, list[tuple]]:
    """What the views say of `rows` (migration 0004): requests not rejected, their tokens and cost; these
    rows' refusals carry no limit code, so none is counted."""
    out = {}
    for view, pick in {"spend_by_key": lambda r: r[1], "spend_by_model": lambda r: r[3],
                       "spend_by_day": lambda r: r[2][:10]}.items():
        groups: dict = {}
        for r in rows:
            if r[7] != "rejected":
                g = groups.setdefault(pick(r), [0, 0, 0, 0.0])
                g[0], g[1], g[2], g[3] = g[0] + 1, g[1] + r[10], g[2] + r[11], g[3] + r[14]
        out[view] = sorted(((k, n, p, c, round(usd, 9)) for k, (n, p, c, usd) in groups.items()), key=str)
    return out


async def views_match_the_rows(url: str) -> None:
    """Each spend view equals its sums taken over every row of the ledger, by the views' rules."""
    for view, column in (("spend_by_key", "key_id"), ("spend_by_model", "route"),
                         ("spend_by_day", "substr(created_at, 1, 10)")):
        shown = await sql(url, f"SELECT {VIEWS[view]}, {', '.join(VIEW_COLUMNS)} FROM {view}")
        direct = await sql(url, f"SELECT {column}, {SUMS} FROM requests WHERE {COUNTED} GROUP BY {column}")
        assert same(shown, direct), view


@pytest.mark.parametrize("previous", ["0003", "0005"])    # before cached tokens; before the spend roll-ups
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_ledger_of_the_previous_schema_is_upgraded_in_place(kind, previous, tmp_path, pg_databases):
    url = str(tmp_path / "old.db") if kind == "sqlite" else await pg_databases.url("old")
    rows = old_rows(2_000)
    await previous_schema_database(url, rows, previous)
    store = await open_store(url)
    try:
        versions = [r[0] for r in await sql(url, "SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [name for name, _ in migration_files()]
        kept = await sql(url, f"SELECT {', '.join(OLD_COLUMNS)} FROM requests ORDER BY id")
        assert kept == rows                                   # every row, every value
        assert await sql(url, "SELECT endpoint, cached_tokens, cache_write_tokens, COUNT(*) FROM requests "
                              "GROUP BY endpoint, cached_tokens, cache_write_tokens") == \
            [("chat.completions", 0, 0, len(rows))]
        assert await view_sums(url) == admitted_sums(rows)     # the views now count admitted requests only
        assert {r[0] for r in await sql(url, "SELECT cached_tokens FROM spend_by_day")} == {0}
        await views_match_the_rows(url)
        registry = KeyRegistry()
        await registry.load(store, T0 + 19 * DAY + 3_000)
        for k in range(3):
            total = sum(r[14] for r in rows if r[1] == f"key_{k}")
            assert registry.by_id[f"key_{k}"].report(T0)["spend_total"] == pytest.approx(total, rel=1e-9)
        await store.insert_rows([{"request_id": "new", "key_id": "key_0", "created_at": utc_iso(T0 + 19 * DAY),
                                  "status": "ok", "prompt_tokens": 100, "cached_tokens": 60, "cache_write_tokens": 10,
                                  "completion_tokens": 1, "total_tokens": 101, "cost_usd": 1.0,
                                  "endpoint": "messages"}])
        assert await sql(url, "SELECT endpoint, cached_tokens, cache_write_tokens FROM requests WHERE "
                              "request_id = 'new'") == [("messages", 60, 10)]
        await store.insert_rows([{"request_id": "orphan", "key_id": "key_deleted_by_hand", "status": "ok",
                                  "created_at": utc_iso(T0 + 19 * DAY), "cost_usd": 0.5}])   # 0007: no key check
        assert await sql(url, "SELECT key_id FROM requests WHERE request_id = 'orphan'") == [("key_deleted_by_hand",)]
        day = utc_iso(T0 + 19 * DAY)[:10]
        (row,) = await sql(url, "SELECT cached_tokens FROM spend_by_day WHERE day = ?", (day,))
        assert row == (60,)
        await views_match_the_rows(url)
    finally:
        await store.close()


async def test_a_long_postgres_migration_is_not_cut_off_by_the_command_timeout(pg_databases):
    """Migration 0005 sums every row of the ledger: over 30 s at 30 million rows, past the pool's command
    timeout, which rolled it back at every start. Here another process holds the migration lock longer than
    this connection's command timeout (as while it migrates a big ledger): this one waits and migrates."""
    url = await pg_databases.url()
    holder = await asyncpg.connect(url)
    waiter = await asyncpg.connect(url, command_timeout=0.5)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", _PG_LOCK)
        migrating = asyncio.ensure_future(apply_postgres_migrations(waiter))
        await asyncio.sleep(1.5)
        assert not migrating.done()                     # waiting for the lock, not timed out
        await holder.execute("SELECT pg_advisory_unlock($1)", _PG_LOCK)
        assert await migrating == [name for name, _ in migration_files("postgres")]
    finally:
        await holder.close()
        await waiter.close()
