"""Poisoned values never stop the ledger (SPEC section 9), and never reach the database through a key name.

A NUL, a lone surrogate, an over-long string or an absurd number in a ledger row is repaired the same
way for SQLite and PostgreSQL; a row the database still refuses (here: a constraint an operator added) is
set aside, counted in `gateway_ledger_rejected_rows_total` and logged, and the rows behind it land. A key
deleted by hand under a running gateway loses none of its rows (migrations/0007). Key names with control
characters or of absurd length are a 400 (admin API) or a one-line error (CLI) on both stores.
"""
from __future__ import annotations

import asyncio
import math
import re
import sqlite3

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gateway.cli import main
from gateway.keys import hash_secret
from gateway.store import LEDGER_COLUMNS, LedgerWriter, Store, is_postgres_url, open_store
from tests.conftest import BOTH_DBS, MASTER, check_error
from tests.fakes import Behaviour
from tests.pg import query as pg_query
from tests.test_ledger_meaning import readme_queries, run_sql

HI = [{"role": "user", "content": "hi"}]
AUTH = {"Authorization": f"Bearer {MASTER}"}
CODE = re.compile(r"[a-z0-9_.\-]{1,64}")
HOSTILE = {"message": "bad\x00message", "type": "invalid\x00request", "code": "bad\x00code", "param": "p\x00"}


async def _metric(gateway, name: str) -> float:
    async with gateway.http.get(f"{gateway.url}/metrics") as resp:
        text = await resp.text()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def _clean(value) -> bool:
    """What any text in the ledger must be: no NUL, valid UTF-8, of a sane length."""
    if not isinstance(value, str):
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value and len(value) <= 256


@BOTH_DBS
async def test_an_upstream_error_full_of_nuls_blocks_no_row(gateway, upstream):
    key = (await gateway.create_key())["key"]
    upstream.queue(Behaviour(status=400, json={"error": HOSTILE}),
                   Behaviour(status=500, json={"error": HOSTILE}), Behaviour(status=500, json={"error": HOSTILE}),
                   Behaviour(status=500, json={"error": HOSTILE}))
    assert (await gateway.post(key, {"model": "gpt", "messages": HI})).status == 400
    assert (await gateway.post(key, {"model": "gpt", "messages": HI})).status == 502     # three tries, all failed
    for stream in (False, True, False):
        async with await gateway.post(key, {"model": "gpt", "messages": HI, "stream": stream}) as resp:
            assert resp.status == 200
            await resp.read()
    rows = await gateway.rows("SELECT * FROM requests ORDER BY id")
    assert [r["status"] for r in rows] == ["error", "error", "ok", "ok", "ok"]
    assert all(_clean(v) for r in rows for v in r.values()), rows
    assert all(r["error_code"] is None or CODE.fullmatch(r["error_code"]) for r in rows), rows
    assert await _metric(gateway, "gateway_ledger_queue_depth") == 0
    assert await _metric(gateway, "gateway_ledger_rejected_rows_total") == 0


async def _delete_key_by_hand(gateway, key_id: str) -> None:
    db = str(gateway.db_path)
    if is_postgres_url(db):
        await pg_query(db, "DELETE FROM api_keys WHERE id = $1 RETURNING id", (key_id,))
    else:
        with sqlite3.connect(db) as con:
            con.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
        con.close()


@BOTH_DBS
async def test_a_key_deleted_by_hand_under_a_running_gateway_keeps_its_rows_and_spend(start_gateway):
    """Once the ledger's foreign key refused these rows, and the key's spend went unrecorded (0007)."""
    gateway = await start_gateway(key_poll_interval=3600)
    gone, kept = await gateway.create_key(name="gone"), await gateway.create_key(name="kept")
    await _delete_key_by_hand(gateway, gone["id"])
    for key in (kept, gone, gone, kept):
        assert (await gateway.post(key["key"], {"model": "demo", "messages": HI})).status == 200
    rows = await gateway.rows("SELECT key_id, cost_usd FROM requests ORDER BY id")
    assert [r["key_id"] for r in rows] == [kept["id"], gone["id"], gone["id"], kept["id"]]
    spent = {r["key_id"]: r for r in await gateway.rows("SELECT key_id, name, requests, cost_usd FROM spend_by_key")}
    assert spent[gone["id"]]["name"] is None and spent[gone["id"]]["requests"] == 2
    assert spent[gone["id"]]["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows if r["key_id"] == gone["id"]))
    assert await _metric(gateway, "gateway_ledger_rejected_rows_total") == 0
    after = 'psql "$GATEWAY_DB"' if is_postgres_url(str(gateway.db_path)) else "sqlite3 gateway.db"
    per_key = readme_queries(after)[0]                  # the README's "spend per key this month"
    assert {name: n for name, n, *_ in await run_sql(gateway.db_path, per_key)} == {"kept": 2, gone["id"]: 2}


@BOTH_DBS
async def test_a_row_the_database_refuses_is_set_aside_and_counted(start_gateway, caplog):
    """An operator's own constraint refuses one key's rows: those are set aside, the rows behind them land."""
    gateway = await start_gateway(key_poll_interval=3600)
    doomed, kept = await gateway.create_key(name="doomed"), await gateway.create_key(name="kept")
    db = str(gateway.db_path)
    if is_postgres_url(db):
        await pg_query(db, f"ALTER TABLE requests ADD CONSTRAINT no_doomed CHECK (key_id <> '{doomed['id']}')")
    else:
        with sqlite3.connect(db) as con:
            con.execute(f"CREATE TRIGGER no_doomed BEFORE INSERT ON requests WHEN NEW.key_id = '{doomed['id']}' "
                        "BEGIN SELECT RAISE(ABORT, 'not this key'); END")
        con.close()
    assert (await gateway.post(kept["key"], {"model": "demo", "messages": HI})).status == 200
    assert (await gateway.post(doomed["key"], {"model": "demo", "messages": HI})).status == 200
    for _ in range(5):
        assert (await gateway.post(kept["key"], {"model": "demo", "messages": HI})).status == 200
    rows = await gateway.rows("SELECT key_id FROM requests ORDER BY id")
    assert [r["key_id"] for r in rows] == [kept["id"]] * 6
    assert await _metric(gateway, "gateway_ledger_rejected_rows_total") == 1
    assert await _metric(gateway, "gateway_ledger_queue_depth") == 0
    assert "ledger row set aside" in caplog.text and doomed["key"] not in caplog.text


# -- any row at all: repaired alike on both stores, or set aside; never a blocked ledger -------------------

KEY_ID = "key_poison0"
texts = st.one_of(st.text(max_size=12), st.text(alphabet="\x00a\u00e9\U0001f600\ud800\udfff", max_size=12),
                  st.integers(257, 3000).map(lambda n: "x\x00" * n), st.integers(-3, 3))
maybe_texts = st.one_of(texts, st.none())
wholes = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=3))
reals = st.one_of(st.none(), st.floats(), st.integers(-2 ** 70, 2 ** 70), st.text(max_size=3),
                  st.floats(1e307, 1.7e308))    # two of these overflow a sum (the day roll-up)
_KINDS = {"cost_usd": reals, "latency_ms": reals, "ttft_ms": reals,
          "stream": wholes, "http_status": wholes, "prompt_tokens": wholes, "completion_tokens": wholes,
          "reasoning_tokens": wholes, "total_tokens": wholes, "attempts": wholes}
hostile_rows = st.fixed_dictionaries({
    **{c: _KINDS.get(c, maybe_texts) for c in LEDGER_COLUMNS if c not in ("request_id", "key_id")},
    "key_id": st.sampled_from([KEY_ID] * 9 + ["key_never_made"]),        # lands all the same (0007)
    "created_at": st.one_of(texts, st.sampled_from([None] + ["2024-05-10T12:00:00.000Z"] * 9)),
    "status": st.one_of(st.sampled_from(["ok", "error", "cancelled", "rejected"]), texts),
    "usage_source": st.one_of(st.sampled_from(["upstream", "estimated"]), texts),
})


def _normal(n: int) -> dict:
    return {"request_id": f"normal-{n}", "key_id": KEY_ID, "created_at": "2024-05-10T12:00:00.000Z",
            "route": "demo", "provider": "p", "upstream_model": "m", "stream": 0, "status": "ok",
            "http_status": 200, "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost_usd": 0.5,
            "latency_ms": 1.0, "ttft_ms": None, "attempts": 1, "usage_source": "upstream"}


class _Reader:
    """SQL as an operator types it, on a connection of its own held through the test (as fast as it gets)."""

    def __init__(self, url: str, conn):
        self.url, self.conn = url, conn

    @classmethod
    async def open(cls, url: str) -> _Reader:
        return cls(url, await asyncpg.connect(url) if is_postgres_url(url) else sqlite3.connect(url))

    async def rows(self) -> list[dict]:
        sql = f"SELECT {', '.join(LEDGER_COLUMNS)} FROM requests ORDER BY request_id"
        if is_postgres_url(self.url):
            return [dict(r) for r in await self.conn.fetch(sql)]
        cur = self.conn.execute(sql)
        return [dict(zip(LEDGER_COLUMNS, r, strict=True)) for r in cur]

    async def rolled_up_cost(self) -> float:
        """All the spend in the day roll-ups (spend_daily), which the gateway adds to with each batch."""
        sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM spend_daily"
        if is_postgres_url(self.url):
            return float(await self.conn.fetchval(sql))
        return float(self.conn.execute(sql).fetchone()[0])

    async def reset(self) -> None:
        """Rows deleted by hand, and their roll-ups with them (migrations/0005): each example starts afresh."""
        if is_postgres_url(self.url):
            await self.conn.execute("DELETE FROM requests; DELETE FROM spend_daily")
        else:
            self.conn.executescript("DELETE FROM requests; DELETE FROM spend_daily")

    async def close(self) -> None:
        await self.conn.close() if is_postgres_url(self.url) else self.conn.close()


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"])
async def test_huge_costs_never_overflow_the_spend_roll_ups(db_kind, tmp_path, pg_databases):
    """Each of these rows alone is one the database takes, so none may be set aside. Costs near the largest
    float overflowed the day's roll-up (spend_daily) once two met there: PostgreSQL refused the sum (22003),
    so the second row was set aside, and every later row of that day, key and route with it; SQLite summed
    to infinity. The property below kept the roll-ups from one example to the next, so the refusal hung on
    earlier examples: found by --hypothesis-seed=1 (2 written, 1 set aside), not repeated on replay."""
    url = str(tmp_path / "huge.db") if db_kind == "sqlite" else await pg_databases.url("huge")
    store = await open_store(url)
    await store.create_key(key_id=KEY_ID, name="k", key_prefix="sk-poison", rpm=1, tpm=1, models=None,
                           key_hash=hash_secret("sk-poison"), budget=1.0, period="never",
                           now="2024-05-10T12:00:00.000Z")
    reader = await _Reader.open(url)
    try:
        ledger = LedgerWriter(store, batch=8, interval=0.002)
        for batch in ([1.7e308, 1.7e308, 9.9e291], [1.7e308], [-1.7e308, -1.7e308]):  # in one batch, in turns
            for cost in batch:
                ledger.record({**_normal(ledger.queued), "cost_usd": cost})
            await ledger.flush()
        await ledger.close()
        assert (ledger.written, ledger.rejected, ledger.depth) == (6, 0, 0)
        costs = [r["cost_usd"] for r in await reader.rows()]
        assert len(costs) == 6 and all(math.isfinite(c) for c in costs), costs
        rolled_up = await reader.rolled_up_cost()
        assert math.isfinite(rolled_up) and rolled_up == pytest.approx(sum(costs)), (rolled_up, costs)
    finally:
        await reader.close()
        await store.close()


def test_any_row_is_repaired_alike_on_both_stores_or_set_aside(tmp_path, pg_databases):
    loop = asyncio.new_event_loop()
    urls = [str(tmp_path / "poison.db"), loop.run_until_complete(pg_databases.url("poison"))]
    stores = [loop.run_until_complete(open_store(url)) for url in urls]
    for store in stores:
        loop.run_until_complete(store.create_key(key_id=KEY_ID, name="k", key_prefix="sk-poison", rpm=1, tpm=1,
                                                 key_hash=hash_secret("sk-poison"), budget=1.0, period="never",
                                                 models=None, now="2024-05-10T12:00:00.000Z"))

    readers = [loop.run_until_complete(_Reader.open(url)) for url in urls]

    async def write(store: Store, reader: _Reader, rows: list[dict]) -> tuple[LedgerWriter, list[dict], float]:
        await reader.reset()
        ledger = LedgerWriter(store, batch=8, interval=0.002)
        for row in rows:
            ledger.record(row)
        await ledger.flush()
        await ledger.close()                     # its drain ends within an interval
        return ledger, await reader.rows(), await reader.rolled_up_cost()

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile_rows, min_size=1, max_size=12), st.integers(0, 12))
    def check(hostile, normals):
        rows = [{**row, "request_id": f"hostile-{i:02}"} for i, row in enumerate(hostile)]
        rows += [_normal(n) for n in range(normals)]
        refused = {r["request_id"] for r in rows if r["created_at"] is None}     # NOT NULL: nothing repairs it
        results = [loop.run_until_complete(write(store, reader, rows))
                   for store, reader in zip(stores, readers, strict=True)]
        for ledger, stored, rolled_up in results:
            assert ledger.depth == 0, "a refused row blocked the ledger"
            assert (ledger.written, ledger.rejected) == (len(rows) - len(refused), len(refused))
            assert [r["request_id"] for r in stored] == sorted(r["request_id"] for r in rows
                                                               if r["request_id"] not in refused)
            assert all(_clean(v) for r in stored for v in r.values())
            assert all(r["error_code"] is None or CODE.fullmatch(r["error_code"]) for r in stored)
            assert math.isfinite(rolled_up), "the day roll-up overflowed"
        (_, sqlite_rows, sqlite_spend), (_, pg_rows, pg_spend) = results
        for a, b in zip(sqlite_rows, pg_rows, strict=True):
            assert all(_same(a[c], b[c]) for c in LEDGER_COLUMNS), (a, b)
        # alike but for the order of the additions (SQLite's SUM compensates its rounding, PostgreSQL's not)
        scale = sum(abs(r["cost_usd"]) for r in sqlite_rows)
        assert abs(sqlite_spend - pg_spend) <= 1e-12 * scale + 1e-9, (sqlite_spend, pg_spend)

    try:
        check()
    finally:
        for closing in (*readers, *stores):
            loop.run_until_complete(closing.close())
        loop.close()


# -- key names -----------------------------------------------------------------------------------------------

BAD_NAMES = ["a\x00b", "line\nbreak", "bell\x07", "\x1b[31mred", "del\x7f", "c1\x85c1", "x" * 201]


@BOTH_DBS
async def test_key_names_with_control_characters_or_absurd_length_are_a_400(gateway):
    for name in BAD_NAMES:
        async with gateway.http.post(f"{gateway.url}/admin/keys", json={"name": name}, headers=AUTH) as resp:
            assert resp.status == 400, (name, await resp.text())
            assert check_error(await resp.json())["param"] == "name"
    good = await gateway.create_key(name="  Zoë’s key 🚀 (team\u00a0a)  ")
    assert good["name"] == "Zoë’s key 🚀 (team\u00a0a)"
    async with gateway.http.get(f"{gateway.url}/admin/keys", headers=AUTH) as resp:
        assert [k["name"] for k in (await resp.json())["data"]] == [good["name"]]
    async with gateway.http.patch(f"{gateway.url}/admin/keys/{good['id']}", json={"name": "a\x00b"},
                                  headers=AUTH) as resp:
        assert resp.status == 400 and check_error(await resp.json())["param"] == "name"


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if "\x00" not in n] + ["bad\udcff"])  # argv holds no NUL
def test_the_cli_refuses_such_names_in_one_line(name, tmp_path, capsys):
    config = tmp_path / "routes.yaml"
    config.write_text("providers: {demo: {dialect: mock}}\nroutes: {demo: {targets: [{provider: demo, model: m}]}}\n")
    code = main(["keys", "create", "--name", name, "--db", str(tmp_path / "gateway.db"), "--config", str(config)])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("gateway: error: --name"), err
