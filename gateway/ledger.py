"""The batched ledger writer: rows leave the request path and reach the store in batches.

`record` only appends to a list. A background task writes a batch per
transaction every few milliseconds; `close` writes everything that is left.
Only one drain runs at a time, and it is shielded: a caller of `flush` that is
cancelled (a client gone away) never cuts a transaction in half, and two
callers never write the same rows twice. While the database refuses writes
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
from typing import Any

from gateway.store import RowRefused, Store

log = logging.getLogger("gateway.ledger")


class LedgerWriter:
    def __init__(self, store: Store, *, interval: float = 0.05, batch: int = 1000, max_buffer: int = 200_000):
        self.store = store
        self.interval = interval
        self.batch = batch
        self.max_buffer = max_buffer
        self.dropped = 0
        self.rejected = 0
        self.written = 0
        self._rows: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._drain: asyncio.Future | None = None
        self._failing = False
        self._closing = False

    @property
    def depth(self) -> int:
        return len(self._rows)

    def record(self, row: dict[str, Any]) -> None:
        if len(self._rows) >= self.max_buffer:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("ledger buffer full (%d rows): %d rows dropped so far", self.max_buffer, self.dropped)
            return
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval if not self._failing else 1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write every buffered row (unless the database refuses); joins a drain already running."""
        if self._drain is None or self._drain.done():
            self._drain = asyncio.ensure_future(self._write_all())
        await asyncio.shield(self._drain)

    async def _write_all(self) -> None:
        while self._rows:
            try:
                await self._write_head(self._rows[: self.batch])
            except Exception as exc:  # sqlite3 errors (locked, disk full, I/O); DatabaseUnavailable (PostgreSQL)
                if not self._failing:
                    log.error("ledger write failed, %d rows kept for retry: %s", len(self._rows), exc)
                self._failing = True
                return
            if self._failing:
                log.warning("ledger writes recovered")
                self._failing = False

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
            self.written += len(rows)
        del self._rows[: len(rows)]

    async def _last_try(self, row: dict[str, Any], refused: RowRefused) -> None:
        try:
            await self.store.insert_rows([row], strict=True)
        except RowRefused:
            self.rejected += 1
            log.error("ledger row set aside, the database refuses it (%s): request_id=%.64s key_id=%.64s; "
                      "%d set aside so far", refused, row.get("request_id"), row.get("key_id"), self.rejected)
        else:
            self.written += 1
            log.warning("ledger row repaired after the database refused it (%s): request_id=%.64s",
                        refused, row.get("request_id"))

    async def close(self) -> None:
        """Stop the background task between batches, then write what is left (retrying ~5 s)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for _ in range(50):
            await self.flush()
            if not self._rows:
                return
            await asyncio.sleep(0.1)
        log.error("ledger: %d rows could not be written at shutdown", len(self._rows))


class NullLedger(LedgerWriter):
    """The benchmark's ledger-off run (GATEWAY_BENCH_LEDGER_OFF=1), to measure what the ledger costs.

    Rows are counted as dropped and never written: never for real use (SPEC section 9).
    """

    def record(self, row: dict[str, Any]) -> None:
        self.dropped += 1
