"""The SQLite store (the default): one file, one process writing, any number reading.

One sqlite3 connection in autocommit mode, owned by one thread (`_Worker`): every
statement runs there, in the order asked, so no transaction interleaves with
another. SQLite in WAL mode so `sqlite3` users and the CLI can read while the
server writes. A database file it creates is 0600 (SPEC section 9): SQLite gives
the -wal and -shm files the mode of the database file, so they are private too.

The ledger's buffer is written from that thread as well (`drain`): as long as
the ledger writer runs, it stays there, writing what arrived every `interval`
and running the other statements in between. So a commit never waits for the
event loop, which under load takes a whole round of requests (about one
request's latency, 100 ms and more) to hear that a write finished; a SIGKILL
loses only the rows of the last interval, whatever the load.
"""
from __future__ import annotations

import asyncio
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

import orjson

from gateway.store.base import (
    KEY_COLUMNS,
    LEDGER_COLUMNS,
    RESPONSE_COLUMNS,
    DatabaseUnavailable,
    KeyRow,
    RowRefused,
    Store,
    key_changes,
    key_values,
    ledger_values,
    response_values,
)
from gateway.store.migrate import apply_migrations, migration_files
from gateway.store.rollup import ROLL_UP_SQLITE, spend_since_sql, spend_sql

# A whole batch travels as one JSON parameter of one statement (its own transaction: whole or not at all):
# executemany would take the GIL back once per row and starve the event loop under load. Multi-row INSERTs
# were measured against it (2026-12-01): a run of power-of-two statements held a commit past the SIGKILL
# test's 150 ms, and one statement of exactly the batch's rows made sqlite3 cache a large prepared statement
# per batch size (a 20,000-request run's memory grew 11%), for 7% less CPU per row.
_INSERT_LEDGER = (f"INSERT INTO requests ({', '.join(LEDGER_COLUMNS)}) SELECT "
                  + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(LEDGER_COLUMNS)))
                  + " FROM json_each(?)")
_KEYS = ", ".join(KEY_COLUMNS)
_INSERT_RESPONSE = (f"INSERT OR IGNORE INTO responses ({', '.join(RESPONSE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' for _ in RESPONSE_COLUMNS)})")
_T = TypeVar("_T")
_Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]   # future, function, arguments
_REFUSED = (sqlite3.IntegrityError, sqlite3.DataError)
# SQLite's primary result codes that mean "the database is not there or busy": locked too long, disk
# full, an I/O error, a file that cannot be opened, written or read as a database. They leave this
# module as DatabaseUnavailable, as asyncpg's connection errors leave postgres.py; anything else
# (a statement of ours SQLite cannot run) goes up as it is, as a bug.
_UNAVAILABLE = frozenset(getattr(sqlite3, name) for name in (
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_NOMEM", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CORRUPT",
    "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PROTOCOL", "SQLITE_NOTADB", "SQLITE_PERM", "SQLITE_NOLFS"))


def _translated(exc: BaseException) -> BaseException:
    """The store-level error for a driver error (see _UNAVAILABLE); other errors as they are."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in _UNAVAILABLE:
        return DatabaseUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}")
    return exc


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


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class _Worker:
    """One thread running jobs in order; `serve` lets a long job (the ledger drain) run the others meanwhile."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.running = True
        self.jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        threading.Thread(target=self._main, name="gateway-sqlite", daemon=True).start()

    async def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        future: asyncio.Future[_T] = self.loop.create_future()
        self.jobs.put((future, fn, args))
        return await future

    async def stop(self, conn: sqlite3.Connection | None) -> None:
        def finish() -> None:
            self.running = False
            if conn is not None:
                conn.close()
        await self.call(finish)

    def serve(self, seconds: float) -> None:
        """From inside a long job: run the jobs that come within `seconds`."""
        deadline = time.monotonic() + seconds
        while self.running:
            try:
                job = self.jobs.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                return
            self._do(job)

    def _main(self) -> None:
        while self.running:
            self._do(self.jobs.get())

    def _do(self, job: _Job) -> None:
        future, fn, args = job
        result, error = None, None
        try:
            result = fn(*args)
        except BaseException as exc:   # delivered to the caller: the one place sqlite3's errors are translated
            error = _translated(exc)
        try:
            self.loop.call_soon_threadsafe(_resolve, future, result, error)
        except RuntimeError:           # the loop is closed: nobody waits any more
            pass


def _connect(path: str) -> sqlite3.Connection:
    """Open, set WAL, migrate. Any sqlite3 error here (no such directory, not a database, locked too
    long) means there is no database to use: DatabaseUnavailable, naming the file."""
    conn = None
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # foreign_keys stays off: the ledger takes rows of keys deleted by hand (migrations/0007)
        apply_migrations(conn)
    except BaseException as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, sqlite3.Error):
            raise DatabaseUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}", f"database {path}: {exc}") from None
        raise
    return conn


def _connect_read_only(path: str) -> sqlite3.Connection:
    """An existing database, read without writing: `mode=ro`, or, where SQLite cannot even make the
    shared-memory index of a WAL file (a read-only folder), `immutable=1`, which reads what is
    checkpointed into the file. Its schema must be current: migrations need a writer."""
    errors = []
    for mode in ("mode=ro", "immutable=1"):
        conn = None
        try:
            conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?{mode}", uri=True, isolation_level=None)
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            errors.append(exc)
            continue
        pending = [name for name, _ in migration_files() if name not in done]
        if pending:
            conn.close()
            raise DatabaseUnavailable("schema behind", f"database {path}: read-only here, and its schema is "
                                      f"behind ({len(pending)} pending); run a gateway command that may write it")
        return conn
    raise DatabaseUnavailable(f"{type(errors[-1]).__name__}: {str(errors[-1])[:200]}",
                              f"database {path}: {errors[-1]}")


def _insert(conn: sqlite3.Connection, rows: list[dict[str, Any]], strict: bool = False) -> None:
    values = [ledger_values(r, strict) for r in rows]
    try:
        conn.execute("BEGIN IMMEDIATE")     # the batch and its spend roll-ups: whole or not at all
        try:
            conn.execute(ROLL_UP_SQLITE, (add_rows(conn, values),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except _REFUSED as exc:            # a CHECK, NOT NULL or an operator's trigger; a value too big
        raise RowRefused(f"{type(exc).__name__} ({exc.sqlite_errorname})") from None
    # locked, disk full, I/O: DatabaseUnavailable (translated by _Worker), the ledger writer keeps the rows


def add_rows(conn: sqlite3.Connection, values: list[list[Any]]) -> int:
    """Insert the ledger rows (`ledger_values`) in the caller's transaction; the last id before them (the
    batch's rows are the ids after it, which the roll-up statement reads). bench/ledger.py times it alone."""
    try:
        batch = orjson.dumps(values).decode()
    except orjson.JSONEncodeError as exc:
        raise RowRefused(type(exc).__name__) from None
    added = conn.execute(_INSERT_LEDGER, (batch,))    # ids lastrowid - rowcount + 1 .. lastrowid
    return (added.lastrowid or 0) - added.rowcount


def _insert_responses(conn: sqlite3.Connection, rows: list[tuple[str, ...]]) -> None:
    """A batch of stored responses in one transaction; a row the database refuses fails the batch
    (`RowRefused`), which the writer splits down to that row."""
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT_RESPONSE, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except _REFUSED as exc:
        raise RowRefused(f"{type(exc).__name__} ({exc.sqlite_errorname})") from None


def _change(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    """Rows an UPDATE or DELETE changed."""
    return conn.execute(sql, params).rowcount


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return conn.execute(sql, params).fetchall()


def _update(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], key_id: str) -> tuple[Any, ...] | None:
    if conn.execute(sql, params).rowcount == 0:
        return None
    row: tuple[Any, ...] | None = conn.execute(f"SELECT {_KEYS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
    return row


def _dicts(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur]


class SqliteStore(Store):
    def __init__(self, worker: _Worker, conn: sqlite3.Connection):
        self._worker, self._conn = worker, conn

    @classmethod
    async def open(cls, path: str, read_only: bool = False) -> SqliteStore:
        """Connect, set WAL, apply migrations (in the worker); on failure the worker thread ends too.
        `read_only`: an existing file, opened without writing (see _connect_read_only)."""
        if not read_only:
            _create_private(path)
        worker = _Worker(asyncio.get_running_loop())
        try:
            conn = await worker.call(_connect_read_only if read_only else _connect, path)
        except BaseException:
            await worker.stop(None)
            raise
        return cls(worker, conn)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await self._worker.call(fn, self._conn, *args)

    async def close(self) -> None:
        await self._worker.stop(self._conn)

    async def ping(self) -> bool:
        return await self._run(_fetch, "SELECT 1") == [(1,)]

    # -- keys --------------------------------------------------------------
    async def create_key(self, **fields: Any) -> KeyRow:
        row = key_values(**fields)
        await self._run(_fetch, f"INSERT INTO api_keys ({_KEYS}) VALUES ({', '.join('?' for _ in KEY_COLUMNS)})",
                        row)
        return KeyRow.from_row(row)

    async def get_key(self, key_id: str) -> KeyRow | None:
        rows = await self._run(_fetch, f"SELECT {_KEYS} FROM api_keys WHERE id = ?", (key_id,))
        return KeyRow.from_row(rows[0]) if rows else None

    async def list_keys(self) -> list[KeyRow]:
        return [KeyRow.from_row(r) for r in await self._run(_fetch, f"SELECT {_KEYS} FROM api_keys "
                                                                    "ORDER BY created_at, id")]

    async def keys_version(self) -> int:
        """SQLite's data_version: changes when another connection (the CLI, a `sqlite3` user) commits."""
        version: int = (await self._run(_fetch, "PRAGMA data_version"))[0][0]
        return version

    async def update_key(self, key_id: str, changes: dict[str, Any], now: str) -> KeyRow | None:
        fields = key_changes(changes, now)
        assignments = ", ".join(f"{k} = ?" for k in fields)
        row = await self._run(_update, f"UPDATE api_keys SET {assignments} WHERE id = ?",
                              (*fields.values(), key_id), key_id)
        return KeyRow.from_row(row) if row else None

    # -- ledger ------------------------------------------------------------
    async def insert_rows(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        await self._run(_insert, rows, strict)

    async def drain(self, rows: list[dict[str, Any]], batch: int, settled: Callable[[int], None],
                    linger: Callable[[], bool] = lambda: False, interval: float = 0.05) -> None:
        await self._worker.call(self._drain_here, rows, batch, settled, linger, interval)

    def _drain_here(self, rows: list[dict[str, Any]], batch: int, settled: Callable[[int], None],
                    linger: Callable[[], bool], interval: float) -> None:
        """In the worker thread. `rows` grows at its tail on the event loop (list operations hold the
        GIL, so each is whole); a batch leaves the head once committed. Stays while `linger()`."""
        while (rows or linger()) and self._worker.running:
            due = time.monotonic() + interval          # one write per interval, however long it took
            if rows:
                head = rows[:batch]
                _insert(self._conn, head)
                del rows[: len(head)]
                settled(len(head))
            self._worker.serve(due - time.monotonic() if len(rows) < batch and linger() else 0.0)

    async def recent_admissions(self, since: str) -> list[tuple[str, str, int]]:
        return await self._run(_fetch, "SELECT key_id, created_at, total_tokens FROM requests "
                                       "WHERE created_at >= ? AND status != 'rejected' ORDER BY created_at",
                               (since,))

    async def spend_since(self, since: str) -> dict[str, float]:
        rows = await self._run(_fetch, *spend_since_sql(since, "?1", "?2"))
        return {key_id: cost or 0.0 for key_id, cost in rows}

    async def spend(self, by: str, since: str | None = None) -> list[dict[str, Any]]:
        return await self._run(_dicts, spend_sql(by, since, "?", postgres=False), () if since is None else (since,))

    # -- stored responses --------------------------------------------------
    async def insert_responses(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        await self._run(_insert_responses, [response_values(r, strict) for r in rows])

    async def get_response(self, response_id: str, key_id: str) -> tuple[str, str] | None:
        rows = await self._run(_fetch, "SELECT input, response FROM responses WHERE id = ? AND key_id = ?",
                               (response_id, key_id))
        return (rows[0][0], rows[0][1]) if rows else None

    async def delete_response(self, response_id: str, key_id: str) -> bool:
        return await self._run(_change, "DELETE FROM responses WHERE id = ? AND key_id = ?",
                                (response_id, key_id)) > 0

    async def prune_responses(self, before: str) -> int:
        return await self._run(_change, "DELETE FROM responses WHERE created_at < ?", (before,))
