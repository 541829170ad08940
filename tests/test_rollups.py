"""Spend roll-ups (gateway/store/rollup.py) always equal the ledger's own sums, on SQLite and PostgreSQL.

Property (hypothesis): whatever batches reach the store (any keys, routes or none, days, statuses,
refusal codes, cached tokens), and whichever of them the store refuses whole, the spend views,
`spend(by, since)` and each key's spend since any instant equal the same sums taken over every row of
`requests` by the rules of the views (admitted requests' tokens, every row's cost, refusals and errors
beside them). A refused batch leaves no roll-up behind. A ledger written before the roll-ups existed
gets them built from its rows when it is opened (test_migrate_ledger.py holds the rows themselves).
"""
from __future__ import annotations

import asyncio
import sqlite3

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import RowRefused, Store, is_postgres_url, open_store, utc_iso
from gateway.store.base import REFUSAL_CODES
from tests.pg import to_dollar_params

KEYS = ("key_a", "key_b", "key_c")
T0 = 1_717_200_000.0     # 2024-06-01T00:00:00Z
COUNTED = f"(status <> 'rejected' OR error_code IN ({', '.join(repr(c) for c in REFUSAL_CODES)}))"
DIRECT = {   # the views' rules, over every row of the ledger
    "key": "key_id",
    "model": "route",
    "day": "substr(created_at, 1, 10)",
}
SUMS = ("SUM(CASE WHEN status <> 'rejected' THEN 1 ELSE 0 END), "
        + ", ".join(f"SUM(CASE WHEN status <> 'rejected' THEN {c} ELSE 0 END)"
                    for c in ("prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens"))
        + ", SUM(cost_usd), SUM(CASE WHEN status = 'rejected' THEN 1 ELSE 0 END), "
          "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END)")
VIEW_COLUMNS = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens", "cost_usd",
                "refused", "errors")

rows = st.fixed_dictionaries({
    "key_id": st.sampled_from(KEYS),
    "route": st.sampled_from(["gpt", "claude", None]),
    "status": st.sampled_from(["ok", "ok", "error", "cancelled", "rejected"]),
    "error_code": st.sampled_from([None, "invalid_value", *REFUSAL_CODES]),
    "at": st.floats(0, 40 * 86_400, allow_nan=False),           # 40 days: months and days roll over
    "prompt_tokens": st.integers(0, 10_000),
    "cached": st.integers(0, 10_000),
    "completion_tokens": st.integers(0, 5_000),
    "cost_usd": st.floats(0, 5, allow_nan=False),
})


def ledger_row(n: int, r: dict) -> dict:
    cached = min(r["cached"], r["prompt_tokens"])
    rejected = r["status"] == "rejected"
    return {"request_id": f"r{n}", "key_id": r["key_id"], "created_at": utc_iso(T0 + r["at"]), "route": r["route"],
            "status": r["status"], "error_code": r["error_code"], "prompt_tokens": r["prompt_tokens"],
            "cached_tokens": cached, "cache_write_tokens": (r["prompt_tokens"] - cached) // 3,
            "completion_tokens": r["completion_tokens"], "total_tokens": r["prompt_tokens"] + r["completion_tokens"],
            "cost_usd": 0.0 if rejected else r["cost_usd"], "attempts": 1}


async def fetch(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    if is_postgres_url(url):
        conn = await asyncpg.connect(url)
        try:
            return [tuple(r) for r in await conn.fetch(to_dollar_params(sql), *params)]
        finally:
            await conn.close()
    con = sqlite3.connect(url)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def same(a: list, b: list) -> bool:
    """Rows equal but for float rounding (a roll-up adds costs batch by batch, the ledger's sum row by row)."""
    def norm(rows: list) -> list:
        return sorted((tuple(round(x, 9) if isinstance(x, float) else x for x in r) for r in rows), key=str)
    return norm(a) == norm(b)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_roll_ups_equal_the_ledgers_own_sums_whatever_batches_arrive(kind, tmp_path, pg_databases):
    loop = asyncio.new_event_loop()
    url = str(tmp_path / "r.db") if kind == "sqlite" else loop.run_until_complete(pg_databases.url("r"))
    store = loop.run_until_complete(open_store(url))
    for key in KEYS:
        loop.run_until_complete(store.create_key(key_id=key, name=key.upper(), key_prefix="sk-r", key_hash=key,
                                                 rpm=1, tpm=1, budget=1, period="never", models=None, now=""))
    written = [0]

    async def check(batches: list[list[dict]], refuse: int, since_day: int, since_at: float) -> None:
        await fetch(url, "DELETE FROM requests")
        await fetch(url, "DELETE FROM spend_daily")
        for i, batch in enumerate(batches):
            good = [ledger_row(written[0] + j, r) for j, r in enumerate(batch)]
            written[0] += len(batch)
            if i == refuse:       # one row the database refuses: the batch, and its roll-ups, are not written
                with pytest.raises(RowRefused):
                    await store.insert_rows([*good, {**good[0], "status": "not-a-status"}])
            await store.insert_rows(good)
        for by, column in DIRECT.items():
            direct = await fetch(url, f"SELECT {column}, {SUMS} FROM requests WHERE {COUNTED} GROUP BY {column}")
            first = {"key": "key_id", "model": "model", "day": "day"}[by]
            view = [tuple(r[c] for c in (first, *VIEW_COLUMNS)) for r in await store.spend(by)]
            assert same(view, direct), by
            day = utc_iso(T0 + since_day * 86_400)[:10]
            direct = await fetch(url, f"SELECT {column}, {SUMS} FROM requests WHERE {COUNTED} AND created_at >= ? "
                                      f"GROUP BY {column}", (day,))
            view = [tuple(r[c] for c in (first, *VIEW_COLUMNS)) for r in await store.spend(by, day)]
            assert same(view, direct), (by, day)
        for since in ("", utc_iso(T0 + since_day * 86_400), utc_iso(T0 + since_at)):
            direct = await fetch(url, "SELECT key_id, SUM(cost_usd) FROM requests WHERE created_at >= ? "
                                      "GROUP BY key_id", (since,))
            spent = await store.spend_since(since)         # a key missing spent nothing
            assert same([(k, spent.get(k, 0.0)) for k in KEYS], [(k, dict(direct).get(k) or 0.0) for k in KEYS])

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.lists(rows, min_size=1, max_size=20), min_size=1, max_size=5), st.integers(0, 5),
           st.integers(0, 40), st.floats(0, 40 * 86_400, allow_nan=False))
    def prop(batches, refuse, since_day, since_at):
        loop.run_until_complete(check(batches, refuse, since_day, since_at))

    try:
        prop()
    finally:
        loop.run_until_complete(store.close())
        loop.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_writers_over_every_key_at_once_neither_deadlocks_nor_loses_a_sum(kind, tmp_path, pg_databases):
    """The benchmark's shape (bench/ledger.py write: a batch touches 201 keys' roll-up rows) from two
    stores at once, listing the keys in opposite orders and spanning three days: on PostgreSQL two
    processes' triggers lock those rows in one order (ORDER BY in rollup.roll_up), so neither waits on
    the other in a circle; on SQLite the two take turns. Every sum still equals the ledger's."""
    url = str(tmp_path / "w.db") if kind == "sqlite" else await pg_databases.url("w")
    stores = [await open_store(url), await open_store(url)]
    keys = [f"key_{k:03d}" for k in range(201)]
    try:
        for key in keys:
            await stores[0].create_key(key_id=key, name=key, key_prefix="sk-w", key_hash=key, rpm=1, tpm=1,
                                       budget=1, period="never", models=None, now="")

        async def write(store: Store, order: list[str], tag: str) -> None:
            for b in range(6):
                rows = [{"request_id": f"{tag}{b}-{i}", "key_id": key, "created_at": utc_iso(T0 + (i % 3) * 86_400),
                         "route": ("gpt", "claude")[i % 2], "status": "error" if i % 7 == 0 else "ok",
                         "prompt_tokens": 10 + i, "completion_tokens": 3, "total_tokens": 13 + i,
                         "cost_usd": 0.001 * (i % 5), "attempts": 1}
                        for i, key in enumerate(order * 2)]
                await store.insert_rows(rows)

        await asyncio.gather(write(stores[0], keys, "a"), write(stores[1], keys[::-1], "b"))
        for by, column in DIRECT.items():
            direct = await fetch(url, f"SELECT {column}, {SUMS} FROM requests WHERE {COUNTED} GROUP BY {column}")
            first = {"key": "key_id", "model": "model", "day": "day"}[by]
            view = [tuple(r[c] for c in (first, *VIEW_COLUMNS)) for r in await stores[1].spend(by)]
            assert same(view, direct), by
        assert (await fetch(url, "SELECT COUNT(*) FROM requests"))[0][0] == 2 * 6 * 402
    finally:
        for store in stores:
            await store.close()
