"""Stored responses (SPEC section 10.2): kept in batches off the request path, found by id and key, pruned by age.

`keep` only appends a row to a `LedgerWriter` of its own (the same batching, bounded buffer,
retries while the database is away, and splitting of a refused batch down to the row at fault,
which is set aside so it never blocks the others). Its batches go through the store's own
connection (SQLite: the store's thread) as any other statement does; they add no round trip to
a request. A row still waiting in the buffer is found too (`_waiting`), so a client continuing a
response at once never misses it. With several processes on one database, a row another process
still buffers is not seen yet: a miss for an id of ours looks once more after a write interval.
All SQL is in the drivers (sqlite.py, postgres.py).
"""
from __future__ import annotations

import asyncio
import logging
import re
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from gateway.store.base import Store
from gateway.store.ledger import LedgerWriter

log = logging.getLogger("gateway.store.responses")
_OURS = re.compile(r"resp_[0-9a-f]{32}")


class _Rows:
    """What the writer needs of a store, for the `responses` table; drained on the event loop (each batch one
    statement on the store's connection), not in the ledger's lingering drain."""

    def __init__(self, store: Store):
        self.store = store

    async def insert_rows(self, rows: list[dict[str, Any]], strict: bool = False) -> None:
        await self.store.insert_responses(rows, strict)

    async def drain(self, rows: list[dict[str, Any]], batch: int, settled: Callable[[int], None],
                    linger: Callable[[], bool] = lambda: False, interval: float = 0.05) -> None:
        while rows:
            head = rows[:batch]
            await self.insert_rows(head)
            del rows[: len(head)]
            settled(len(head))


class Stored:
    """A stored response: the conversation it answered (input items) and the response object."""

    __slots__ = ("items", "response")

    def __init__(self, items: list[dict[str, Any]], response: dict[str, Any]):
        self.items, self.response = items, response

    @property
    def output(self) -> list[dict[str, Any]]:
        output = self.response.get("output")
        return output if isinstance(output, list) else []


class ResponseMemory:
    def __init__(self, store: Store, *, interval: float = 0.05):
        self.store = store
        self.interval = interval
        self.writer = LedgerWriter(_Rows(store), interval=interval, batch=200, max_buffer=20_000, what="responses")
        self._waiting: dict[tuple[str, str], dict[str, Any]] = {}   # (id, key_id) -> row not yet written
        self._order: deque[tuple[int, tuple[str, str]]] = deque()    # (its number in the writer, its key)

    def start(self) -> None:
        self.writer.start()

    async def close(self) -> None:
        await self.writer.close()

    def keep(self, response_id: str, key_id: str, created_at: str, items: list[dict[str, Any]],
             response: bytes) -> None:
        """Buffer one response for the next batch (`response`: the JSON the client got)."""
        try:
            text = orjson.dumps(items).decode()
        except (orjson.JSONEncodeError, TypeError):   # never from a checked body; a row of ours, kept out
            log.warning("a response could not be stored: response_id=%.64s", response_id)
            return
        row = {"id": response_id, "key_id": key_id, "created_at": created_at, "input": text,
               "response": response.decode()}
        before = self.writer.queued
        self.writer.record(row)
        if self.writer.queued > before:
            self._waiting[(response_id, key_id)] = row
            self._order.append((self.writer.queued, (response_id, key_id)))
        self._forget_written()

    def _forget_written(self) -> None:
        settled = self.writer.settled
        while self._order and self._order[0][0] <= settled:
            self._waiting.pop(self._order.popleft()[1], None)

    async def find(self, response_id: str, key_id: str) -> Stored | None:
        """The response `key_id` stored under this id, or None (another key's is None too)."""
        texts = await self._texts(response_id, key_id)
        if texts is None:
            return None
        items, response = orjson.loads(texts[0]), orjson.loads(texts[1])
        return Stored(items if isinstance(items, list) else [], response if isinstance(response, dict) else {})

    async def answer(self, response_id: str, key_id: str) -> str | None:
        """The response object's JSON, for `GET /v1/responses/{id}`."""
        texts = await self._texts(response_id, key_id)
        return None if texts is None else texts[1]

    async def _texts(self, response_id: str, key_id: str) -> tuple[str, str] | None:
        self._forget_written()
        row = self._waiting.get((response_id, key_id))
        if row is not None:
            return row["input"], row["response"]
        found = await self.store.get_response(response_id, key_id)
        if found is None and _OURS.fullmatch(response_id):   # another process may still hold it in its batch
            await asyncio.sleep(self.interval * 2)
            found = await self.store.get_response(response_id, key_id)
        return found

    async def delete(self, response_id: str, key_id: str) -> bool:
        """Remove it (once buffered rows are written, so a waiting row cannot come back after)."""
        await self.writer.flush()
        self._forget_written()
        self._waiting.pop((response_id, key_id), None)
        return await self.store.delete_response(response_id, key_id)

    async def prune(self, before: str) -> int:
        return await self.store.prune_responses(before)
