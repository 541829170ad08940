"""The store interface (gateway/store/), one suite run against both implementations: SQLite and PostgreSQL.

The `store_url` fixture is parametrized, so every test here holds on each store or fails by name
(`[sqlite]` / `[postgres]`): keys, ledger batches, spend views and `since`, the facts windows are
rebuilt from, and change pickup across two connections and across processes. The PostgreSQL-only
part at the end: a server that goes away and comes back while the ledger writer keeps rows.
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

import asyncpg
import pytest

from gateway.keys import KeyRegistry, hash_secret
from gateway.store import (
    DatabaseUnavailable,
    KeyRow,
    LedgerWriter,
    Store,
    is_postgres_url,
    open_store,
    redact_url,
    utc_iso,
)
from gateway.store.migrate import migration_files
from tests.pg import to_dollar_params
from tests.procs import free_port


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


NOW = ts("2024-05-10T12:00:00")


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request, tmp_path, pg_databases) -> str:
    return str(tmp_path / "gateway.db") if request.param == "sqlite" else await pg_databases.url()


@pytest.fixture
async def store(store_url):
    opened = await open_store(store_url)
    yield opened
    await opened.close()


async def raw(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    """SQL as an operator types it into sqlite3 or psql: another connection, committed at once."""
    if is_postgres_url(url):
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(to_dollar_params(sql), *params)]
        finally:
            await conn.close()
    con = sqlite3.connect(url, isolation_level=None)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


async def new_key(store: Store, key_id: str, name: str = "k", **limits) -> KeyRow:
    fields = {"rpm": 10, "tpm": 1000, "budget": 5.0, "period": "never", "models": None, **limits}
    return await store.create_key(key_id=key_id, name=name, key_prefix="sk-" + key_id[-6:],
                                  key_hash=hash_secret("sk-" + key_id), now=utc_iso(NOW), **fields)


def row(key_id: str, at: float, status: str = "ok", route: str = "demo", prompt: int = 10, completion: int = 20,
        cost: float = 0.5, **extra) -> dict:
    return {"request_id": f"req-{key_id}-{at}-{status}-{route}", "key_id": key_id, "created_at": utc_iso(at),
            "route": route, "provider": "p", "upstream_model": "m", "stream": 0, "status": status,
            "http_status": 200 if status == "ok" else 429, "prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion, "cost_usd": cost, "latency_ms": 12.5, "ttft_ms": None,
            "attempts": 1, "usage_source": "upstream", **extra}


def test_every_sqlite_migration_has_its_postgres_twin():
    assert [name for name, _ in migration_files("sqlite")] == [name for name, _ in migration_files("postgres")]
    assert len(migration_files("postgres")) >= 2


async def test_tables_views_and_columns_are_the_same_on_both(tmp_path, pg_databases):
    names = ("api_keys", "requests", "spend_by_key", "spend_by_model", "spend_by_day", "schema_migrations")
    lite, pg = str(tmp_path / "a.db"), await pg_databases.url()
    for url in (lite, pg):
        await (await open_store(url)).close()
    sqlite_cols = {t: [r[1] for r in await raw(lite, f"PRAGMA table_info({t})")] for t in names}
    pg_cols = {t: [r[0] for r in await raw(pg, "SELECT column_name FROM information_schema.columns "
                                               "WHERE table_name = ? ORDER BY ordinal_position", (t,))]
               for t in names}
    assert sqlite_cols == pg_cols
    assert sqlite_cols["spend_by_day"] == ["day", "requests", "prompt_tokens", "completion_tokens", "cached_tokens",
                                           "cache_write_tokens", "cost_usd", "refused", "errors"]
    assert sqlite_cols["requests"][-3:] == ["endpoint", "cached_tokens", "cache_write_tokens"]


async def test_reopening_applies_each_migration_once(store_url, store):
    again = await open_store(store_url)
    await again.close()
    versions = [r[0] for r in await raw(store_url, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [name for name, _ in migration_files()]


async def test_keys_create_get_list_update_revoke(store):
    a = await new_key(store, "key_aaaaaa", "alpha", models=["demo", "gpt"])
    b = await new_key(store, "key_bbbbbb", "beta", rpm=3, budget=0.25, period="monthly")
    assert await store.get_key(a.id) == a and a.models == ["demo", "gpt"] and a.revoked_at is None
    assert await store.get_key("key_missing") is None
    assert [k.id for k in await store.list_keys()] == [a.id, b.id]
    changed = await store.update_key(b.id, {"rpm_limit": 7, "max_budget": 1.5, "models": ["demo"],
                                            "key_hash": "not updatable"}, utc_iso(NOW + 5))
    assert (changed.rpm_limit, changed.max_budget, changed.models, changed.key_hash) == (7, 1.5, ["demo"], b.key_hash)
    assert changed.updated_at == utc_iso(NOW + 5) and changed.created_at == b.created_at
    assert (await store.update_key(b.id, {"models": None}, utc_iso(NOW + 6))).models is None
    revoked = await store.update_key(a.id, {"revoked_at": utc_iso(NOW + 7)}, utc_iso(NOW + 7))
    assert revoked.revoked_at == utc_iso(NOW + 7) and await store.get_key(a.id) == revoked
    assert await store.update_key("key_missing", {"rpm_limit": 1}, utc_iso(NOW)) is None
    assert isinstance(revoked.max_budget, float) and isinstance(revoked.rpm_limit, int)


async def fill(store: Store) -> None:
    """Two keys, two routes, two days; a refusal; three batches."""
    await new_key(store, "key_aaaaaa", "alpha")
    await new_key(store, "key_bbbbbb", "beta")
    day1, day2 = ts("2024-05-09T23:59:59"), ts("2024-05-10T11:59:30")
    await store.insert_rows([row("key_aaaaaa", day1), row("key_bbbbbb", day1, route="gpt", cost=2.0)])
    await store.insert_rows([row("key_aaaaaa", day2 + i, prompt=i) for i in range(3)])
    await store.insert_rows([row("key_bbbbbb", day2, status="rejected", prompt=0, completion=0, cost=0.0,
                                 error_code="rate_limit_exceeded"),
                             row("key_bbbbbb", day2 + 1, status="rejected", route=None, prompt=0, completion=0,
                                 cost=0.0, error_code="model_not_found")])   # a typo: not spend, not a refusal


async def test_ledger_batches_and_spend_views(store, store_url):
    await fill(store)
    assert await raw(store_url, "SELECT COUNT(*), SUM(total_tokens) FROM requests") == [(7, 2 * 30 + 3 + 60)]
    by_key = await store.spend("key")
    assert by_key == [              # cost first, then requests (admitted ones); the refusal beside them
        {"key_id": "key_aaaaaa", "name": "alpha", "requests": 4, "prompt_tokens": 13, "completion_tokens": 80,
         "cached_tokens": 0, "cache_write_tokens": 0, "cost_usd": 2.0, "refused": 0, "errors": 0},
        {"key_id": "key_bbbbbb", "name": "beta", "requests": 1, "prompt_tokens": 10, "completion_tokens": 20,
         "cached_tokens": 0, "cache_write_tokens": 0, "cost_usd": 2.0, "refused": 1, "errors": 0}]
    assert [(r["model"], r["requests"], r["refused"], r["cost_usd"]) for r in await store.spend("model")] == \
        [("demo", 4, 1, 2.0), ("gpt", 1, 0, 2.0)]                # no row for the typo's missing route
    assert [(r["day"], r["requests"]) for r in await store.spend("day")] == [("2024-05-09", 2), ("2024-05-10", 3)]
    assert [(r["day"], r["requests"]) for r in await store.spend("day", "2024-05-10")] == [("2024-05-10", 3)]
    since = await store.spend("key", "2024-05-10")
    assert [(r["key_id"], r["name"], r["requests"], r["refused"], r["cost_usd"]) for r in since] == \
        [("key_aaaaaa", "alpha", 3, 0, 1.5), ("key_bbbbbb", "beta", 0, 1, 0.0)]
    assert await store.spend("model", "2024-05-11") == []
    view = await raw(store_url, "SELECT key_id, requests, prompt_tokens, completion_tokens, cost_usd FROM spend_by_key "
                                "ORDER BY key_id")
    assert view == [("key_aaaaaa", 4, 13, 80, 2.0), ("key_bbbbbb", 1, 10, 20, 2.0)]


async def test_windows_and_spend_are_rebuilt_from_the_ledger(store):
    await fill(store)
    assert await store.spend_since(utc_iso(ts("2024-05-10T00:00:00"))) == {"key_aaaaaa": 1.5, "key_bbbbbb": 0.0}
    assert await store.spend_total() == {"key_aaaaaa": 2.0, "key_bbbbbb": 2.0}
    recent = await store.recent_admissions(utc_iso(NOW - 60))
    assert recent == [("key_aaaaaa", utc_iso(ts("2024-05-10T11:59:30") + i), 20 + i) for i in range(3)]
    registry = KeyRegistry()
    await registry.load(store, NOW)
    alpha = registry.by_id["key_aaaaaa"].report(NOW)
    assert (alpha["rpm_used"], alpha["tpm_used"]) == (3, 63)      # the refusal of beta counts in no window
    assert alpha["spend_total"] == pytest.approx(2.0)
    assert registry.by_id["key_bbbbbb"].report(NOW)["rpm_used"] == 0
    async with store.session():          # the CLI's reads on one connection: the same answers
        held = KeyRegistry()
        await held.load(store, NOW)
        assert await store.spend("key") == await store.spend("key")
    assert {k: s.report(NOW) for k, s in held.by_id.items()} == {k: s.report(NOW) for k, s in registry.by_id.items()}


async def test_a_session_whose_connection_is_cut_fails_as_any_call_does(pg_databases):
    """PostgreSQL: the connection a session holds, ended by the server, is DatabaseUnavailable there (as
    outside a session), and the pool connects again after it."""
    url = await pg_databases.url()
    store = await open_store(url)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with store.session():
                await store.list_keys()
                await raw(url, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "   # waits for its end
                               "WHERE application_name = 'llm-gateway' AND datname = current_database()")
                with pytest.raises(DatabaseUnavailable):      # the call itself, not only the session's end
                    await store.list_keys()
                await store.ping()
        assert await store.list_keys() == [] and await store.ping()
    finally:
        await store.close()


async def test_a_batch_is_written_whole_or_not_at_all(store, store_url):
    await new_key(store, "key_aaaaaa")
    bad = [row("key_aaaaaa", NOW), row("key_aaaaaa", NOW + 1, status="not-a-status")]
    with pytest.raises(Exception):  # noqa: B017 - each store refuses in its own words; nothing may be written
        await store.insert_rows(bad)
    assert await raw(store_url, "SELECT COUNT(*) FROM requests") == [(0,)]
    await store.insert_rows([row("key_aaaaaa", NOW, stream=True, cost_usd=1, http_status=200.0)])   # loose types
    assert await raw(store_url, "SELECT stream, cost_usd, http_status FROM requests") == [(1, 1.0, 200)]


async def test_key_changes_reach_another_connection(store, store_url):
    other = await open_store(store_url)
    try:
        key = await new_key(store, "key_aaaaaa")
        gone = await new_key(store, "key_bbbbbb")
        registry = KeyRegistry()
        await registry.load(other, NOW)
        assert await registry.refresh(other) == 0                       # nothing new yet
        await store.update_key(key.id, {"revoked_at": utc_iso(NOW)}, utc_iso(NOW))
        assert await registry.refresh(other) == 1
        assert registry.by_id[key.id].row.revoked_at == utc_iso(NOW)
        # by hand, in psql or sqlite3: an UPDATE and a DELETE in the same instant
        await raw(store_url, "UPDATE api_keys SET rpm_limit = 1 WHERE id = ?", (key.id,))
        await raw(store_url, "DELETE FROM api_keys WHERE id = ?", (gone.id,))
        assert await registry.refresh(other) == 2
        assert registry.by_id[key.id].row.rpm_limit == 1 and gone.id not in registry.by_id
        assert gone.key_hash not in registry.by_hash
    finally:
        await other.close()


async def test_key_changes_from_another_process_are_seen(store, store_url, tmp_path):
    key = await new_key(store, "key_aaaaaa")
    registry = KeyRegistry()
    await registry.load(store, NOW)
    before = await store.keys_version()
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "keys", "revoke", key.id,
                                                   "--db", store_url, "--config", str(tmp_path / "none.yaml")],
                                  capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert await store.keys_version() != before
    assert await registry.refresh(store) == 1 and registry.by_id[key.id].row.revoked_at is not None


async def test_the_cli_reads_and_writes_either_store(store_url, tmp_path):
    def cli(*argv: str) -> str:
        out = subprocess.run([sys.executable, "-m", "gateway", *argv, "--db", store_url,
                              "--config", str(tmp_path / "none.yaml")], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    created = json.loads(await asyncio.to_thread(cli, "keys", "create", "--name", "cli", "--rpm", "9", "--json"))
    await asyncio.to_thread(cli, "keys", "update", created["id"], "--budget", "2.5")
    shown = json.loads(await asyncio.to_thread(cli, "keys", "show", created["id"], "--json"))
    assert (shown["rpm_limit"], shown["max_budget"], shown["spend_total"]) == (9, 2.5, 0)
    assert json.loads(await asyncio.to_thread(cli, "spend", "--by", "day", "--json")) == []

    def cut_short() -> subprocess.CompletedProcess[bytes]:     # `gateway keys list | head -1`
        read, write = os.pipe()
        os.close(read)
        try:
            return subprocess.run([sys.executable, "-m", "gateway", "keys", "list", "--json", "--db", store_url],
                                  stdout=write, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(write)
    gone = await asyncio.to_thread(cut_short)      # the output's error, not the database's (read in a session)
    assert (gone.returncode, gone.stderr) == (1, b"gateway: error: broken pipe\n")


# -- PostgreSQL only ------------------------------------------------------------------------------

async def test_an_unreachable_server_is_one_clear_error_without_the_password():
    url = f"postgresql://gw:hunter2secret@127.0.0.1:{free_port()}/ledger"
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_store(url)
    assert "hunter2secret" not in caught.value.message and "127.0.0.1" in caught.value.message
    assert caught.value.status == 503 and caught.value.code == "database_unavailable"
    assert redact_url(url) == url.replace("hunter2secret", "***") and redact_url("gateway.db") == "gateway.db"
    cli = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "spend", "--db", url],
                                  capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1 and cli.stderr.startswith("gateway: error: The database does not answer")
    assert "hunter2secret" not in cli.stderr and "Traceback" not in cli.stderr and len(cli.stderr.splitlines()) == 1


async def test_processes_starting_at_once_migrate_one_at_a_time(pg_databases):
    url = await pg_databases.url()
    stores = await asyncio.gather(*(open_store(url) for _ in range(4)))
    for opened in stores:
        await opened.close()
    versions = [r[0] for r in await raw(url, "SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [name for name, _ in migration_files("postgres")]


async def test_rows_wait_while_postgres_is_down_and_land_when_it_returns(temp_postgres, caplog):
    """A real server stopped and started again: refused batches stay buffered (up to the bound), the pool
    reconnects by itself, and every kept row is written once."""
    store = await open_store(temp_postgres.url)
    ledger = LedgerWriter(store, max_buffer=30)
    try:
        await new_key(store, "key_aaaaaa")
        for i in range(10):
            ledger.record(row("key_aaaaaa", NOW + i))
        await ledger.flush()
        assert ledger.written == 10 and ledger.depth == 0
        await asyncio.to_thread(temp_postgres.stop)
        for i in range(10, 50):
            ledger.record(row("key_aaaaaa", NOW + i))
        await ledger.flush()                                   # refused: nothing raised, nothing lost below the bound
        assert (ledger.depth, ledger.dropped, ledger.written) == (30, 10, 10)
        with pytest.raises(DatabaseUnavailable):
            await store.ping()
        assert "ledger write failed, 30 rows kept for retry" in caplog.text
        assert "ledger buffer full (30 rows): 1 rows dropped so far" in caplog.text
        await asyncio.to_thread(temp_postgres.start)
        await ledger.flush()
        assert (ledger.depth, ledger.written) == (0, 40) and await store.ping()
        assert "ledger writes recovered" in caplog.text
        got = await raw(temp_postgres.url, "SELECT COUNT(*), COUNT(DISTINCT request_id), MIN(created_at), "
                                           "MAX(created_at) FROM requests")
        assert got == [(40, 40, utc_iso(NOW), utc_iso(NOW + 39))]          # the first 40, once each
    finally:
        await ledger.close()
        await store.close()


# -- SQLite only ----------------------------------------------------------------------------------

async def test_sqlite_errors_leave_the_store_as_the_errors_postgresql_gives(tmp_path):
    """Not a database, and locked past the busy timeout: DatabaseUnavailable, as PostgreSQL away is;
    the ledger writer keeps its rows and writes them once the lock is gone."""
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("not a database\n" * 100)
    with pytest.raises(DatabaseUnavailable) as caught:
        await open_store(str(not_a_db))
    assert caught.value.status == 503 and caught.value.message.startswith(f"database {not_a_db}: ")
    url = str(tmp_path / "gateway.db")
    store = await open_store(url)
    ledger = LedgerWriter(store)
    lock = sqlite3.connect(url, timeout=0, isolation_level=None)
    try:
        await new_key(store, "key_aaaaaa")
        lock.execute("BEGIN EXCLUSIVE")               # past the store's 5 s busy timeout
        with pytest.raises(DatabaseUnavailable) as caught:
            await store.insert_rows([row("key_aaaaaa", NOW)])
        assert caught.value.code == "database_unavailable" and "locked" in caught.value.message
        ledger.record(row("key_aaaaaa", NOW + 1))
        lock.execute("COMMIT")
        await ledger.flush()
        assert ledger.written == 1 and await raw(url, "SELECT COUNT(*) FROM requests") == [(1,)]
    finally:
        lock.close()
        await ledger.close()
        await store.close()
