"""Applies `migrations/NNNN_name.sql` in order, each with its bookkeeping row in one transaction."""
from __future__ import annotations

import re
from importlib import resources

import aiosqlite

_NAME = re.compile(r"^(\d{4})_[\w\-]+\.sql$")


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("gateway.migrations")
    found = sorted(f.name for f in folder.iterdir() if _NAME.match(f.name))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in found]


async def apply_migrations(db: aiosqlite.Connection) -> list[str]:
    await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL "
                     "DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))")
    await db.commit()
    async with db.execute("SELECT version FROM schema_migrations") as cur:
        done = {row[0] async for row in cur}
    applied = []
    for name, sql in migration_files():
        if name in done:
            continue
        # executescript would commit on its own; run statements inside one explicit transaction instead
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                await db.execute(statement)
            await db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (name,))
            await db.commit()
        except Exception:
            await db.rollback()
            raise
        applied.append(name)
    return applied


def _statements(sql: str) -> list[str]:
    text = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip() for s in text.split(";") if s.strip()]
