"""A ledger that grows for years: how start-up, key and spend reports, and ledger writes scale with its rows.

    python bench/ledger.py build   --db DB --rows 3000000 [--keys 201] [--days 90] [--before 0005]
    python bench/ledger.py measure --db DB [--repeat 3]
    python bench/ledger.py write   --db DB [--batches 30] [--against DB_BEFORE]

DB is a SQLite path or a postgresql:// URL. `build` makes a ledger as a gateway of the schema before
migration `--before` would have it (the migrations before it, then `--rows` rows over `--days` days and
`--keys` keys, made in SQL so 30 million rows take minutes, not hours). `measure` times, on whatever code
runs it: `gateway serve` until /health answers, `GET /admin/keys`, `gateway keys list` and
`gateway spend --by key|model|day` (each a whole process, as a user runs it, with its CPU seconds beside:
`*_cpu_s`; `python_start_*` is `gateway --version`; opening the database first applies pending
migrations, whose time is `first_open_s`), then the same reads in its own process
(`inproc_*`: without Python's start-up, which dominates once the reads are small). `write` times the
ledger's own write path on the big ledger (batches of 1,000 rows over 201 keys, on a connection held
from batch to batch as the gateway's drain holds one; see _Ledger) and the roll-ups' own share of it
(`rollup_*`: PostgreSQL's trigger as the server counts it, SQLite's statement timed alone; on SQLite also
`same_file_*`, the store's write against the write before the roll-ups in the same file); `--against` a
copy in the schema before the roll-ups also writes each batch there as the code before them did, batch
for batch in turn, and gives the difference batch by batch (`write_vs_baseline`: two databases, so it
carries more noise than `rollup_*`). bench/ledger.sh runs all of it against the code before and after
the spend roll-ups; results: bench/ledger-results.md.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

T0 = 1_756_684_800          # 2025-09-01T00:00:00Z: the ledger's first day
MASTER = "bench-master-key-0123456789abcdef"
ROUTES = "providers:\n  demo: {dialect: mock}\nroutes:\n  demo-chat:\n    targets: [{provider: demo, model: chat, " \
         "price: {input: 1.0, output: 2.0}}]\n"


def postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def _rows_sql(rows: int, keys: int, days: int, pg: bool) -> str:
    """Rows in time order: keys round-robin, three routes, 2% refused (budget), 1% upstream errors."""
    span = days * 86_400
    i = "g.i" if pg else "i"
    at = (f"to_char(to_timestamp({T0} + {i}::float8 * {span} / {rows}) AT TIME ZONE 'UTC', "
          "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')" if pg else
          f"strftime('%Y-%m-%dT%H:%M:%fZ', {T0} + {i} * {span}.0 / {rows}, 'unixepoch')")
    cat = "||"
    select = (f"SELECT 'req-' {cat} {i}, 'key_' {cat} ({i} % {keys}), {at}, "
              f"CASE {i} % 3 WHEN 0 THEN 'demo-chat' WHEN 1 THEN 'gpt' ELSE 'claude' END, 'demo', 'chat', {i} % 2, "
              f"CASE WHEN {i} % 50 = 0 THEN 'rejected' WHEN {i} % 100 = 1 THEN 'error' ELSE 'ok' END, "
              f"CASE WHEN {i} % 50 = 0 THEN 429 WHEN {i} % 100 = 1 THEN 502 ELSE 200 END, "
              f"CASE WHEN {i} % 50 = 0 THEN 'budget_exceeded' WHEN {i} % 100 = 1 THEN 'upstream_error' END, "
              f"CASE WHEN {i} % 50 = 0 THEN 0 ELSE 200 + {i} % 900 END, "
              f"CASE WHEN {i} % 50 = 0 THEN 0 ELSE 20 + {i} % 300 END, "
              f"CASE WHEN {i} % 50 = 0 THEN 0 ELSE 220 + {i} % 900 + {i} % 300 END, "
              f"CASE WHEN {i} % 50 = 0 THEN 0 ELSE (200 + {i} % 900 + 2 * (20 + {i} % 300)) / 1e6 END, "
              f"12.5 + {i} % 40, 1, 'upstream'")
    columns = ("request_id, key_id, created_at, route, provider, upstream_model, stream, status, http_status, "
               "error_code, prompt_tokens, completion_tokens, total_tokens, cost_usd, latency_ms, attempts, "
               "usage_source")
    if pg:
        return f"INSERT INTO requests ({columns}) {select} FROM generate_series(0, {rows} - 1) AS g(i)"
    return (f"INSERT INTO requests ({columns}) WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n "
            f"WHERE i + 1 < {rows}) {select} FROM n")


def _keys(keys: int) -> list[tuple]:
    when = "2025-09-01T00:00:00.000Z"
    return [(f"key_{k}", f"team-{k}", "sk-bench00", f"{k:064x}", 1000, 1_000_000, 1e9, "monthly", None, when,
             None, when) for k in range(keys)]


async def build(db: str, rows: int, keys: int, days: int, before: str) -> None:
    from gateway.store.migrate import _statements, migration_files

    files = [(n, t) for n, t in migration_files("postgres" if postgres(db) else "sqlite") if n < before]
    began = time.monotonic()
    if postgres(db):
        import asyncpg
        conn = await asyncpg.connect(db)
        try:
            for name, text in files:
                await conn.execute(text)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
            await conn.executemany(f"INSERT INTO api_keys VALUES ({', '.join(f'${i}' for i in range(1, 13))})",
                                   _keys(keys))
            step = 1_000_000
            for start in range(0, rows, step):     # in slices: one transaction of 30M rows would hold a lot
                n = min(step, rows - start)
                await conn.execute(_rows_sql(n, keys, days, True).replace("g.i", f"(g.i + {start})")
                                   .replace(f"/ {n})", f"/ {rows})"))
            await conn.execute("ANALYZE")
        finally:
            await conn.close()
    else:
        con = sqlite3.connect(db, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        for name, text in files:
            for statement in _statements(text):
                con.execute(statement)
            con.execute("INSERT INTO schema_migrations (version) VALUES (?)", (name,))
        con.executemany(f"INSERT INTO api_keys VALUES ({', '.join('?' * 12)})", _keys(keys))
        con.execute("BEGIN")
        con.execute(_rows_sql(rows, keys, days, False))
        con.execute("COMMIT")
        con.close()
        os.chmod(db, 0o600)
    print(json.dumps({"built": rows, "keys": keys, "days": days, "schema_before": before,
                      "seconds": round(time.monotonic() - began, 1)}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gateway(*args: str, env: dict[str, str], cwd: str, cpu: list[float] | None = None) -> float:
    """Seconds the command took; its CPU seconds (user + system) go to `cpu`: on a machine shared with other
    jobs, a process waits for a core, and its wall time says more about the load than about the command."""
    began, used = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"gateway {' '.join(args)} failed: {done.stderr[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime + after.ru_stime - used.ru_utime - used.ru_stime)
    return time.monotonic() - began


def _get(url: str, key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            resp.read()
            return int(resp.status)
    except OSError:
        return 0


def _serve(db: str, config: str, env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Seconds from `gateway serve` to a 200 from /health, and one GET /admin/keys once it answers."""
    port = _free_port()
    with tempfile.TemporaryFile() as log:
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--db", db, "--config", config,
                                 "--port", str(port), "--no-access-log"], env=env, cwd=cwd, stdout=log, stderr=log)
        try:
            while _get(f"http://127.0.0.1:{port}/health") != 200:
                if proc.poll() is not None or time.monotonic() - began > 3600:
                    log.seek(0)
                    raise SystemExit(f"gateway serve did not start: {log.read()[-800:].decode(errors='replace')}")
                time.sleep(0.02)
            ready = time.monotonic() - began
            began = time.monotonic()
            assert _get(f"http://127.0.0.1:{port}/admin/keys", MASTER) == 200
            return ready, time.monotonic() - began
        finally:
            proc.terminate()
            proc.wait(30)


def measure(db: str, repeat: int) -> None:
    """Each command runs in an empty temp folder: `python -m gateway` puts its folder first on sys.path, so
    from the repository's root it would import the checked-out code whatever PYTHONPATH names (ledger.sh
    runs the code before the roll-ups through PYTHONPATH), and it would read that folder's .env."""
    env = {**os.environ, "GATEWAY_MASTER_KEY": MASTER}
    db = db if postgres(db) else os.path.abspath(db)
    with tempfile.TemporaryDirectory() as tmp:
        config = str(Path(tmp) / "routes.yaml")
        Path(config).write_text(ROUTES)
        common = ("--db", db, "--config", config)
        first = _gateway("spend", "--by", "day", "--json", *common, env=env, cwd=tmp)   # applies pending migrations
        times: dict[str, list[float]] = {}

        def timed(name: str, *args: str) -> None:
            wall = _gateway(*args, env=env, cwd=tmp, cpu=times.setdefault(f"{name}_cpu_s", []))
            times.setdefault(f"{name}_s", []).append(wall)

        for _ in range(repeat):
            ready, admin = _serve(db, config, env, tmp)
            times.setdefault("serve_ready_s", []).append(ready)
            times.setdefault("admin_keys_s", []).append(admin)
            timed("keys_list", "keys", "list", "--json", *common)
            for by in ("key", "model", "day"):
                timed(f"spend_{by}", "spend", "--by", by, "--json", *common)
        for _ in range(repeat):
            timed("python_start", "--version")
    out = {"first_open_s": round(first, 2), **{k: round(statistics.median(v), 3) for k, v in times.items()},
           **asyncio.run(inproc(db, repeat))}
    print(json.dumps(out))


async def inproc(db: str, repeat: int) -> dict[str, float]:
    """The same reads in this process, without starting Python: what grows with the ledger."""
    from gateway.keys import KeyRegistry
    from gateway.store import open_store

    store = await open_store(db)
    times: dict[str, list[float]] = {}
    try:
        for _ in range(repeat):
            began = time.perf_counter()
            await KeyRegistry().load(store, time.time())
            times.setdefault("inproc_keys_load_s", []).append(time.perf_counter() - began)
            for by in ("key", "model", "day"):
                began = time.perf_counter()
                await store.spend(by)
                times.setdefault(f"inproc_spend_{by}_s", []).append(time.perf_counter() - began)
    finally:
        await store.close()
    return {k: round(statistics.median(v), 4) for k, v in times.items()}


def _batch(b: int) -> list[dict]:
    """1,000 rows of one second, over 201 keys: 201 roll-up rows to add to (the most a batch touches here)."""
    at = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(T0 + 95 * 86_400 + b))
    return [{"request_id": f"w{b}-{i}", "key_id": f"key_{i % 201}", "created_at": at, "route": "demo-chat",
             "provider": "demo", "upstream_model": "chat", "stream": 0, "status": "ok", "http_status": 200,
             "prompt_tokens": 300, "completion_tokens": 40, "total_tokens": 340, "cost_usd": 0.00038,
             "latency_ms": 20.0, "attempts": 1, "usage_source": "upstream"} for i in range(1000)]


class _Ledger:
    """One side of `write`: the ledger's write path on a connection held from batch to batch, as the
    gateway's drain holds one (its batches go through neither a pool's acquire nor its reset).

    `roll_ups=True`: the store's own path (`open_store`, which migrates; then SQLite's `_insert`, the insert
    and its roll-up statement in one transaction, on the store's thread; PostgreSQL's `_copy`, one COPY
    whose trigger adds the roll-ups). `roll_ups=False`: the write before the roll-ups (c7a5df8^) on a
    database of that schema, opened raw: the same ledger_values, then one INSERT from a JSON parameter on
    a thread (SQLite) or one COPY (PostgreSQL)."""

    def __init__(self, db: str, roll_ups: bool):
        self.db, self.roll_ups = db, roll_ups
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> _Ledger:
        from gateway.store import open_store

        if self.roll_ups:
            store = await open_store(self.db)
            self.stack.push_async_callback(store.close)
            if postgres(self.db):
                self.pg = await self.stack.enter_async_context(store._conn())
            else:
                self.store = store
        elif postgres(self.db):
            import asyncpg
            self.pg = await asyncpg.connect(self.db)
            self.stack.push_async_callback(self.pg.close)
        else:
            self.lite = sqlite3.connect(self.db, isolation_level=None, check_same_thread=False)
            self.stack.callback(self.lite.close)
            for pragma in ("busy_timeout=5000", "synchronous=NORMAL", "foreign_keys=ON"):    # as the store's then
                self.lite.execute(f"PRAGMA {pragma}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()

    async def insert_rows(self, rows: list[dict]) -> None:
        from gateway.store.base import LEDGER_COLUMNS, ledger_values

        if postgres(self.db):
            if self.roll_ups:
                from gateway.store.postgres import _copy
                await _copy(self.pg, rows)
            else:
                await self.pg.copy_records_to_table("requests", records=[ledger_values(r) for r in rows],
                                                    columns=LEDGER_COLUMNS)
        elif self.roll_ups:
            await self.store.insert_rows(rows)
        else:
            await asyncio.to_thread(_without_roll_ups, self.lite, [ledger_values(r) for r in rows])


def _without_roll_ups(conn: sqlite3.Connection, values: list[list[object]]) -> None:
    """The store's insert of a batch, in a transaction of its own, without the roll-up statement."""
    from gateway.store.sqlite import add_rows

    conn.execute("BEGIN IMMEDIATE")
    add_rows(conn, values)
    conn.execute("COMMIT")


async def _trigger_time(ledger: _Ledger) -> float | None:
    """Seconds PostgreSQL spent in the roll-up trigger (spend_daily_add) so far: the roll-ups' own cost, which
    the load of a shared machine cannot blur the way it blurs two timings side by side. Needs the right to
    set track_functions (a superuser); None without it. Statistics reach the view once the session has
    been idle a second after a transaction."""
    import asyncpg

    try:
        await ledger.pg.execute("SET track_functions = 'pl'")
    except asyncpg.InsufficientPrivilegeError:
        return None
    await asyncio.sleep(1.1)
    await ledger.pg.execute("SELECT 1")
    await asyncio.sleep(0.2)
    await ledger.pg.execute("SELECT pg_stat_clear_snapshot()")
    ms = await ledger.pg.fetchval("SELECT total_time FROM pg_stat_user_functions WHERE funcname = 'spend_daily_add'")
    return (ms or 0.0) / 1000


def _sqlite_roll_up_time(db: str, batches: int) -> dict[str, object]:
    """SQLite's roll-up statement timed on its own (the store's statements for a batch, sqlite._insert: the
    insert and ROLL_UP_SQLITE in one transaction, each timed), and the store's write against the write before
    the roll-ups (no roll-up statement, foreign_keys on, as before migration 0007) in the same file, batch by
    batch in turn: two files (`--against`) differ by their page cache more than the two writes do. A WAL
    checkpoint lands on whichever commit crosses its threshold (some 30 ms on one batch in five or so), so
    the two are compared by their total time over many batches, not batch by batch."""
    from gateway.store.base import ledger_values
    from gateway.store.rollup import ROLL_UP_SQLITE
    from gateway.store.sqlite import add_rows

    def connect(foreign_keys: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(db, isolation_level=None)
        for pragma in ("busy_timeout=5000", "synchronous=NORMAL", *(("foreign_keys=ON",) if foreign_keys else ())):
            conn.execute(f"PRAGMA {pragma}")
        return conn

    store, before = connect(False), connect(True)
    rest = roll_up = 0.0
    whole = {"store": 0.0, "before": 0.0}
    try:
        for b in range(2 * batches):
            side = ("store", "before")[(b + b // 2) % 2]          # store, before, before, store, ...
            conn = store if side == "store" else before
            began = time.perf_counter()
            values = [ledger_values(r) for r in _batch(10_000 + b)]
            conn.execute("BEGIN IMMEDIATE")
            last = add_rows(conn, values)
            inserted = time.perf_counter()
            if side == "store":
                conn.execute(ROLL_UP_SQLITE, (last,))
            rolled = time.perf_counter()
            conn.execute("COMMIT")
            whole[side] += time.perf_counter() - began
            if side == "store":
                rest += (inserted - began) + (time.perf_counter() - rolled)
                roll_up += rolled - inserted
    finally:
        store.close()
        before.close()
    return {"rollup_statement_us_per_row": round(roll_up / (batches * 1000) * 1e6, 2),
            "rollup_statement_vs_rest_of_write": f"+{100 * roll_up / rest:.1f}%",
            "same_file_write_vs_before": f"{100 * (whole['store'] / whole['before'] - 1):+.1f}%"}


async def write(db: str, batches: int, against: str | None) -> None:
    """Microseconds per ledger row written by the store's own path (batches of 1,000, one transaction each).
    With `against` (a copy of the ledger in the schema before the roll-ups, from `build`), each batch is
    also written there the way the code before the roll-ups wrote it, the two taking turns batch by batch,
    and compared batch by batch (`write_vs_baseline`; two databases, so not free of noise either). The
    roll-ups' own time beside it: PostgreSQL's trigger as the server counts it, SQLite's statement timed
    alone (`rollup_*`)."""
    times: dict[str, list[float]] = {"store": [], "baseline": []}
    out: dict[str, object] = {}
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(_Ledger(db, True))
        sides = [("store", store)]
        if against:
            sides.append(("baseline", await stack.enter_async_context(_Ledger(against, False))))
        trigger = await _trigger_time(store) if postgres(db) else None
        for b in range(batches):
            for name, ledger in sides if b % 2 else sides[::-1]:
                rows = _batch(b)
                began = time.perf_counter()
                await ledger.insert_rows(rows)
                times[name].append((time.perf_counter() - began) / len(rows) * 1e6)
        if not postgres(db):
            out |= await asyncio.to_thread(_sqlite_roll_up_time, db, batches)
        if trigger is not None:
            spent = await _trigger_time(store) - trigger
            out["rollup_trigger_us_per_row"] = round(spent / (batches * 1000) * 1e6, 2)
            written = sum(times["store"]) * 1000 / 1e6                 # seconds the store's batches took
            out["rollup_trigger_vs_rest_of_write"] = f"+{100 * spent / (written - spent):.1f}%"
    per_row = times["store"]
    out |= {"write_us_per_row_median": round(statistics.median(per_row), 2),
            "write_us_per_row_p90": round(sorted(per_row)[int(len(per_row) * 0.9)], 2)}
    if against:
        ratios = [a / b for a, b in zip(per_row, times["baseline"], strict=True)]
        out |= {"baseline_us_per_row_median": round(statistics.median(times["baseline"]), 2),
                "write_vs_baseline": f"{100 * (statistics.median(ratios) - 1):+.1f}%",
                "write_vs_baseline_quartiles": [f"{100 * (q - 1):+.1f}%" for q in statistics.quantiles(ratios)[::2]]}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--db", required=True)
    b.add_argument("--rows", type=int, default=3_000_000)
    b.add_argument("--keys", type=int, default=201)
    b.add_argument("--days", type=int, default=90)
    b.add_argument("--before", default="0005", help="build the schema of the migrations before this one")
    m = sub.add_parser("measure")
    m.add_argument("--db", required=True)
    m.add_argument("--repeat", type=int, default=3)
    w = sub.add_parser("write")
    w.add_argument("--db", required=True)
    w.add_argument("--batches", type=int, default=30)
    w.add_argument("--against", help="a copy in the schema before the roll-ups: time the write before them too")
    args = parser.parse_args()
    if args.command == "build":
        asyncio.run(build(args.db, args.rows, args.keys, args.days, args.before))
    elif args.command == "measure":
        measure(args.db, args.repeat)
    else:
        asyncio.run(write(args.db, args.batches, args.against))


if __name__ == "__main__":
    main()
