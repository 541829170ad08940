"""The PostgreSQL store: one ledger and one key table shared by many gateway processes and machines.

A small asyncpg pool per process (the ledger writer, the key poll and the admin
API rarely need more than one connection each). A ledger batch is one COPY,
which PostgreSQL applies as one transaction: whole or not at all. Every asyncpg
and socket error that means "the server is not there" (refused, reset, shut
down, restarting, out of connections or disk) becomes `DatabaseUnavailable`
here, in one place: the ledger writer keeps its rows and retries, and the pool
opens fresh connections once the server answers again.

The ledger's drain runs on a thread with an event loop and a connection of its
own (`_LedgerThread`), for as long as the ledger writer runs: on the request
loop, under load, each step of a COPY waits a whole round of requests (about one
request's latency), and a SIGKILL lost up to a second of answered requests at
c=200. There, it commits what arrived every 50 ms whatever the load.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import asyncpg

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
    redact_url,
    response_values,
)
from gateway.store.migrate import apply_postgres_migrations
from gateway.store.rollup import spend_since_sql, spend_sql

POOL_MIN, POOL_MAX = 1, 4
CONNECT_TIMEOUT = 5.0      # a server that is away must not hold a request to /health or a ledger batch for long
COMMAND_TIMEOUT = 30.0
ACQUIRE_TIMEOUT = 10.0
_UNAVAILABLE = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                asyncpg.exceptions.OperatorInterventionError, asyncpg.exceptions.InsufficientResourcesError)
_KEYS = ", ".join(KEY_COLUMNS)
_INSERT_RESPONSE = (f"INSERT INTO responses ({', '.join(RESPONSE_COLUMNS)}) "
                    f"VALUES ({', '.join(f'${i + 1}' for i in range(len(RESPONSE_COLUMNS)))}) ON CONFLICT DO NOTHING")
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


@contextlib.asynccontextmanager
async def _acquire(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection; "the server is not there" leaves here as DatabaseUnavailable."""
    try:
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
            yield conn
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(_reason(exc)) from None


@contextlib.asynccontextmanager
async def _using(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """The session's connection (PostgresStore.session), its errors turned as `_acquire` turns them."""
    try:
        yield conn
    except _UNAVAILABLE as exc:
        raise DatabaseUnavailable(_reason(exc)) from None


async def _copy(conn: asyncpg.Connection, rows: list[dict[str, Any]], strict: bool = False) -> None:
    records = [ledger_values(r, strict) for r in rows]
    try:
        await conn.copy_records_to_table("requests", records=records, columns=LEDGER_COLUMNS)
    except _REFUSED as exc:
        raise RowRefused(_refusal(exc)) from None


async def _close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), CONNECT_TIMEOUT)
    except _UNAVAILABLE:
        pool.terminate()


class _LedgerThread:
    """A thread running an event loop of its own, where the ledger's drain and its one connection live."""

    def __init__(self, url: str):
        self.url = url
        self.pool: asyncpg.Pool | None = None
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._main, name="gateway-pg-ledger", daemon=True).start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    async def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run `coro` there; awaited here."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def connection_pool(self) -> asyncpg.Pool:
        """There: a pool of one, which connects when first used and again after the server was away."""
        if self.pool is None:
            self.pool = await asyncpg.create_pool(self.url, min_size=0, max_size=1, timeout=CONNECT_TIMEOUT,
                                                  command_timeout=COMMAND_TIMEOUT,
                                                  server_settings={"application_name": "llm-gateway-ledger"})
        return self.pool

    async def close(self) -> None:
        try:
            await self.run(self._shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)

    async def _shutdown(self) -> None:
        """There: end a drain still waiting for rows (its writer was never closed), then the pool."""
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if self.pool is not None:
            await _close_pool(self.pool)


class PostgresStore(Store):
    def __init__(self, pool: asyncpg.Pool, url: str):
        self.pool = pool
        self.where = redact_url(url)
        self._url = url
        self._ledger: _LedgerThread | None = None
        self._held: asyncpg.Connection | None = None

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
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

    def _conn(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        return _acquire(self.pool) if self._held is None else _using(self._held)

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """One pooled connection for the calls inside, which must not overlap (a CLI command's reads): the
        pool's acquire and its reset query (a round trip) once, not per call; about 4 ms of `keys list`."""
        async with _acquire(self.pool) as conn:
            self._held = conn
            try:
                yield
            finally:
                self._held = None

    async def close(self) -> None:
        if self._ledger is not None:
            await self._ledger.close()
        await _close_pool(self.pool)

    async def ping(self) -> bool:
        async with self._conn() as conn:
            answer: int = await conn.fetchval("SELECT 1")
            return answer == 1

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
            version: int = await conn.fetchval("SELECT version FROM api_keys_version")
            return version

    async def update_key(self, key_id: str, changes: dict[str, Any], now: str) -> KeyRow | None:
        fields = key_changes(changes, now)
        assignments = ", ".join(f"{k} = ${i + 1}" for i, k in enumerate(fields))
        async with self._conn() as conn:
            row = await conn.fetchrow(f"UPDATE api_keys SET {assignments} WHERE id = ${len(fields) + 1} "
                                      f"RETURNING {_KEYS}", *fields.values(), key_id)
        return KeyRow.from_row(row) if row else None

    # -- ledger ------------------------------------------------------------
    async def insert_rows(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        async with self._conn() as conn:
            await _copy(conn, rows, strict)

    async def drain(self, rows: list[dict[str, Any]], batch: int, settled: Callable[[int], None],
                    linger: Callable[[], bool] = lambda: False, interval: float = 0.05) -> None:
        if self._ledger is None:
            self._ledger = _LedgerThread(self._url)
        await self._ledger.run(self._drain_there(self._ledger, rows, batch, settled, linger, interval))

    @staticmethod
    async def _drain_there(there: _LedgerThread, rows: list[dict[str, Any]], batch: int,
                           settled: Callable[[int], None], linger: Callable[[], bool], interval: float) -> None:
        """On the ledger thread's loop. `rows` grows at its tail on the request loop (list operations hold
        the GIL, so each is whole); a batch leaves the head once committed. Stays while `linger()`."""
        try:
            pool = await there.connection_pool()
        except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(_reason(exc)) from None
        loop = asyncio.get_running_loop()
        async with _acquire(pool) as conn:          # held while the drain lasts: no reset per batch
            while rows or linger():
                due = loop.time() + interval         # one write per interval, however long it took
                if rows:
                    head = rows[:batch]
                    await _copy(conn, head)
                    del rows[: len(head)]
                    settled(len(head))
                await asyncio.sleep(max(due - loop.time(), 0.0) if len(rows) < batch and linger() else 0)

    async def recent_admissions(self, since: str) -> list[tuple[str, str, int]]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT key_id, created_at, total_tokens FROM requests "
                                    "WHERE created_at >= $1 AND status != 'rejected' ORDER BY created_at", since)
        return [tuple(row) for row in rows]

    async def spend_since(self, since: str) -> dict[str, float]:
        async with self._conn() as conn:
            sql, params = spend_since_sql(since, "$1", "$2")
            rows = await conn.fetch(sql, *params)
        return {row[0]: row[1] or 0.0 for row in rows}

    async def spend(self, by: str, since: str | None = None) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            rows = await conn.fetch(spend_sql(by, since, "$1", postgres=True), *(() if since is None else (since,)))
        return [dict(row) for row in rows]

    # -- stored responses --------------------------------------------------
    async def insert_responses(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        values = [response_values(r, strict) for r in rows]
        async with self._conn() as conn:
            try:
                async with conn.transaction():
                    await conn.executemany(_INSERT_RESPONSE, values)
            except _REFUSED as exc:
                raise RowRefused(_refusal(exc)) from None

    async def get_response(self, response_id: str, key_id: str) -> tuple[str, str] | None:
        async with self._conn() as conn:
            row = await conn.fetchrow("SELECT input, response FROM responses WHERE id = $1 AND key_id = $2",
                                      response_id, key_id)
        return (row[0], row[1]) if row else None

    async def delete_response(self, response_id: str, key_id: str) -> bool:
        async with self._conn() as conn:
            done: str = await conn.execute("DELETE FROM responses WHERE id = $1 AND key_id = $2", response_id, key_id)
        return done != "DELETE 0"

    async def prune_responses(self, before: str) -> int:
        async with self._conn() as conn:
            done: str = await conn.execute("DELETE FROM responses WHERE created_at < $1", before)
        return int(done.split()[-1])
