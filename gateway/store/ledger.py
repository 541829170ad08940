"""The batched ledger writer: rows leave the request path and reach the store in batches.

`record` only appends to a list. From `start` on, a drain hands the list to
the store (`Store.drain`), which writes what arrived every `interval` (50 ms),
a batch per transaction, and takes it off the head of the list once committed.
Both stores drain from a thread of their own for as long as the writer runs,
so commits never wait for a busy event loop and a SIGKILL loses only the rows
of about the last interval. `flush` waits
until the rows buffered when it was called are written; `close` writes
everything that is left. Only one drain runs at a time, and it is shielded: a
caller of `flush` that is cancelled (a client gone away) never cuts a
transaction in half, and two callers never write the same rows twice. While the database refuses writes
(SQLite locked or its disk full; PostgreSQL down, restarting or unreachable)
rows wait in a bounded buffer and are retried every second; only past the
bound are they dropped, counted (`gateway_ledger_dropped_rows_total`) and logged.

A batch the database refuses for what it holds (`RowRefused`: a value, a
constraint) is split in halves down to the row at fault, so the others land;
that row gets one stricter repair, and if it is still refused it is set aside:
counted (`gateway_ledger_rejected_rows_total`) and logged by request id, never
retried, so it cannot block the rows behind it.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from gateway.store.base import RowRefused

log = logging.getLogger("gateway.ledger")


class Sink(Protocol):
    """Where batches go: a `Store` for the ledger (or another table's batches, see responses.py)."""

    async def insert_rows(self, rows: list[dict[str, Any]], strict: bool = False) -> None: ...
    async def drain(self, rows: list[dict[str, Any]], batch: int, settled: Callable[[int], None],
                    linger: Callable[[], bool] = ..., interval: float = ...) -> None: ...


class LedgerWriter:
    def __init__(self, store: Sink, *, interval: float = 0.05, batch: int = 1000, max_buffer: int = 200_000,
                 what: str = "ledger"):
        self.store = store
        self.what = what      # the rows' name in log lines
        self.interval = interval
        self.batch = batch
        self.max_buffer = max_buffer
        self.dropped = 0
        self.rejected = 0
        self.written = 0
        self._rows: list[dict[str, Any]] = []
        self._queued = 0       # rows ever buffered; those before `_settled` are written or set aside
        self._settled = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._failing = False
        self._closing = False

    @property
    def depth(self) -> int:
        return len(self._rows)

    @property
    def settled(self) -> int:
        """Rows ever buffered that are written or set aside: the first `settled`, as rows leave in order."""
        return self._settled

    @property
    def queued(self) -> int:
        """Rows ever buffered (the last one recorded is row number `queued`)."""
        return self._queued

    def record(self, row: dict[str, Any]) -> None:
        if len(self._rows) >= self.max_buffer:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("%s buffer full (%d rows): %d rows dropped so far", self.what, self.max_buffer,
                          self.dropped)
            return
        self._rows.append(row)
        self._queued += 1
        if len(self._rows) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def _run(self) -> None:
        while not self._closing:
            await self.flush()    # at once: the store's drain is under way before the first request
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval if not self._failing else 1.0)
            except TimeoutError:
                pass
            self._wake.clear()

    async def flush(self) -> None:
        """Write every row buffered so far (unless the database refuses); joins a drain already running.

        The drain is never cancelled with a caller (a client gone away): it is waited for, not awaited.
        """
        target = self._queued
        if self._drain is None or self._drain.done():
            self._drain = asyncio.ensure_future(self._write_all())
        while self._settled < target and not self._drain.done():
            await asyncio.wait([self._drain], timeout=self.interval / 5)

    async def _write_all(self) -> None:
        while True:
            try:
                try:
                    await self.store.drain(self._rows, self.batch, self._written, self._lingering, self.interval)
                except RowRefused:
                    await self._write_head(self._rows[: self.batch])   # down to the row at fault
                    continue
            except Exception as exc:  # DatabaseUnavailable (either store); anything else is retried alike
                if not self._failing:
                    log.error("%s write failed, %d rows kept for retry: %s", self.what, len(self._rows), exc)
                self._failing = True
                return
            if not self._rows:
                return

    def _lingering(self) -> bool:
        return not self._closing

    def _written(self, count: int) -> None:
        """A batch is committed (reported from the store's thread, for SQLite)."""
        self.written += count
        self._settled += count
        if self._failing:
            self._failing = False
            log.warning("%s writes recovered", self.what)

    async def _write_head(self, rows: list[dict[str, Any]]) -> None:
        """Write `rows`, the head of the buffer, and take each off it once written or set aside."""
        try:
            await self.store.insert_rows(rows)
        except RowRefused as exc:
            if len(rows) > 1:
                half = len(rows) // 2
                await self._write_head(rows[:half])
                await self._write_head(rows[half:])
                return
            await self._last_try(rows[0], exc)
        else:
            self._written(len(rows))
        del self._rows[: len(rows)]

    async def _last_try(self, row: dict[str, Any], refused: RowRefused) -> None:
        try:
            await self.store.insert_rows([row], strict=True)
        except RowRefused:
            self.rejected += 1
            self._settled += 1
            log.error("%s row set aside, the database refuses it (%s): request_id=%.64s key_id=%.64s; "
                      "%d set aside so far", self.what, refused, row.get("request_id") or row.get("id"),
                      row.get("key_id"), self.rejected)
        else:
            self._written(1)
            log.warning("%s row repaired after the database refused it (%s): request_id=%.64s",
                        self.what, refused, row.get("request_id") or row.get("id"))

    async def close(self) -> None:
        """Stop the background task between batches, then write what is left (retrying ~5 s)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for _ in range(50):
            await self.flush()
            if not self._rows:
                break
            await asyncio.sleep(0.1)
        else:
            log.error("%s: %d rows could not be written at shutdown", self.what, len(self._rows))
        if self._drain is not None:
            await asyncio.wait([self._drain])   # a store's drain ends at once when closing


class NullLedger(LedgerWriter):
    """The benchmark's ledger-off run (GATEWAY_BENCH_LEDGER_OFF=1), to measure what the ledger costs.

    Rows are counted as dropped and never written: never for real use (SPEC section 9).
    """

    def record(self, row: dict[str, Any]) -> None:
        self.dropped += 1
