"""Applies the numbered schema files in order, each with its bookkeeping row in one transaction.

SQLite's are `migrations/NNNN_name.sql`; PostgreSQL's are `migrations/postgres/NNNN_name.sql`,
the same steps under the same names in that dialect (a test holds the two lists equal).
"""
from __future__ import annotations

import os
import re
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # a type only: PostgreSQL's store (and its CLI commands) never load sqlite3
    import sqlite3

_NAME = re.compile(r"^(\d{4})_[\w\-]+\.sql$")
_FOLDERS = {"sqlite": (), "postgres": ("postgres",)}
# pg_advisory_xact_lock key: processes starting at once against one PostgreSQL migrate one at a time
_PG_LOCK = 0x6C6C6D677764   # "llmgwd"
# A migration runs once, for as long as its ledger needs: 0005 sums every row (over 30 s at 30 million rows,
# where the pool's 30 s command timeout cut it off, rolled it back, and no gateway could start), and a
# process that starts meanwhile waits that long for the lock. asyncpg has no "no timeout" per call.
PG_MIGRATION_TIMEOUT = 24 * 3600.0
# Whether the bookkeeping table is there, read from the catalog as a query: to_regclass() here, before the
# lock, would leave a negative entry in this connection's catalog cache, and the check under the lock
# would then miss a table another process has just created (and apply 0000 a second time).
_PG_HAS_BOOKKEEPING = ("SELECT EXISTS (SELECT FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                       "ON n.oid = c.relnamespace "
                       "WHERE c.relname = 'schema_migrations' AND n.nspname = current_schema())")


def _folder(dialect: str) -> str:
    """Where the package's migrations of `dialect` are, read as files (importlib.resources would import
    zipfile and its compressors: 10 ms of every command's start)."""
    spec = find_spec("gateway.migrations")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the gateway.migrations package is not installed")
    return os.path.join(next(iter(spec.submodule_search_locations)), *_FOLDERS[dialect])


def migration_names(dialect: str = "sqlite", folder: str | None = None) -> list[str]:
    """The file name of every migration of `dialect`, in order."""
    return sorted(name for name in os.listdir(folder or _folder(dialect)) if _NAME.match(name))


def migration_files(dialect: str = "sqlite") -> list[tuple[str, str]]:
    """(name, SQL) of every migration of `dialect`, in order."""
    folder = _folder(dialect)
    return [(name, _read(folder, name)) for name in migration_names(dialect, folder)]


def _read(folder: str, name: str) -> str:
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return f.read()


def apply_migrations(db: sqlite3.Connection) -> list[str]:
    """On a sqlite3 connection in autocommit mode, in the thread that owns it (the store's worker).

    The bookkeeping table itself comes from `0000_schema_migrations.sql`, the first file."""
    exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                        "AND name = 'schema_migrations'").fetchone() is not None
    done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")} if exists else set()
    applied = []
    folder = _folder("sqlite")
    for name in migration_names("sqlite", folder):
        if name in done:
            continue
        sql = _read(folder, name)      # only a pending file is read: every command opens the store
        # executescript would commit on its own; run statements inside one explicit transaction instead
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (name,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


async def apply_postgres_migrations(conn: Any) -> list[str]:
    """On an asyncpg connection. A file runs whole (functions with `$$` bodies need no splitting);
    DDL is transactional there, so a failed file leaves nothing behind. A schema already current costs two
    queries, not a locked transaction per file (every CLI command opens the store: 13 ms of `spend`), and
    the files' SQL is read only then."""
    if await conn.fetchval(_PG_HAS_BOOKKEEPING):
        done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        if done.issuperset(migration_names("postgres")):
            return []
    applied = []
    for name, sql in migration_files("postgres"):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK, timeout=PG_MIGRATION_TIMEOUT)
            if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL") and \
                    await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", name):
                continue   # done before, or by a process that held the lock first
            await conn.execute(sql, timeout=PG_MIGRATION_TIMEOUT)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
        applied.append(name)
    return applied


def _statements(sql: str) -> list[str]:
    text = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]
