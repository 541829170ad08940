#!/usr/bin/env bash
# The ledger bench (bench/ledger.py) before and after the spend roll-ups, on SQLite and PostgreSQL.
#
#   bash bench/ledger.sh [ROWS] [BEFORE_COMMIT]        # ROWS default 3000000
#
# One ledger of ROWS rows (201 keys, 90 days) is built in the schema the gateway had before the
# roll-ups (migrations before 0005), copied, and measured twice: by the code of BEFORE_COMMIT (default:
# the commit before the one that added migrations/0005_spend_rollups.sql), and by the code checked out
# here, whose first open applies migration 0005 (its time is `first_open_s`). PostgreSQL is measured when
# one answers at GATEWAY_BENCH_PG (default postgresql://postgres@127.0.0.1:5432/postgres). Output: one
# JSON line per step; about 5 minutes at 3 million rows on 2 cores. At 30 million the builds alone take 20
# (SQLite, 6.8 GB) and 30 minutes (PostgreSQL, 11 GB), and the code before the roll-ups needs minutes for
# each command it is timed on. The ledger's write is compared batch by batch
# (`write --against`): on a shared machine the load moves, between two runs minutes apart, by more than
# the difference being measured. Results: bench/ledger-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${1:-3000000}
ADDED=$(git rev-list -1 HEAD -- migrations/0005_spend_rollups.sql)
BEFORE=${2:-${ADDED:+$ADDED^}}
BEFORE=$(git rev-parse "${BEFORE:-HEAD}")
PY=${PYTHON:-.venv/bin/python}
ADMIN=${GATEWAY_BENCH_PG:-postgresql://postgres@127.0.0.1:5432/postgres}
WORK=$(mktemp -d /tmp/ledger-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# the code before: that commit's tree, importable as `gateway` (its migrations folder where the package
# expects it)
mkdir "$WORK/before"
git archive "$BEFORE" gateway migrations | tar -x -C "$WORK/before"
ln -s ../migrations "$WORK/before/gateway/migrations"
# both trees byte-compiled: where PYTHONDONTWRITEBYTECODE is set, an uncompiled tree is compiled again by
# every process, and the start-up times would compare compilers
"$PY" -m compileall -q "$WORK/before/gateway" gateway
before() { PYTHONPATH="$WORK/before" "$PY" bench/ledger.py "$@"; }
after() { "$PY" bench/ledger.py "$@"; }

run() {   # run KIND DB_BEFORE DB_AFTER
  echo "{\"store\": \"$1\", \"code\": \"before ($(git rev-parse --short "$BEFORE"))\"}"
  before measure --db "$2"
  echo "{\"store\": \"$1\", \"code\": \"after (working tree)\"}"
  after measure --db "$3"
  after write --db "$3" --against "$2" --batches 100
}

echo "{\"rows\": $ROWS, \"sqlite\": \"$WORK\"}"
after build --db "$WORK/a.db" --rows "$ROWS"
cp "$WORK/a.db" "$WORK/b.db"
ls -l "$WORK/a.db" | awk '{print "{\"sqlite_bytes\": " $5 "}"}'
run sqlite "$WORK/a.db" "$WORK/b.db"
rm -f "$WORK"/a.db* "$WORK"/b.db*

if "$PY" - "$ADMIN" <<'EOF'
import asyncio, sys
import asyncpg
async def main():
    conn = await asyncpg.connect(sys.argv[1], timeout=3)
    for name in ("gw_ledger_bench_a", "gw_ledger_bench_b"):
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
    await conn.execute("CREATE DATABASE gw_ledger_bench_a")
    await conn.close()
try:
    asyncio.run(main())
except Exception as exc:
    print(f"no PostgreSQL at {sys.argv[1]} ({type(exc).__name__}): skipped", file=sys.stderr)
    sys.exit(1)
EOF
then
  BASE=${ADMIN%/*}
  after build --db "$BASE/gw_ledger_bench_a" --rows "$ROWS"
  "$PY" -c "import asyncio, asyncpg, sys
async def m():
    c = await asyncpg.connect(sys.argv[1]); await c.execute('CREATE DATABASE gw_ledger_bench_b TEMPLATE gw_ledger_bench_a'); await c.close()
asyncio.run(m())" "$ADMIN"
  run postgres "$BASE/gw_ledger_bench_a" "$BASE/gw_ledger_bench_b"
  "$PY" -c "import asyncio, asyncpg, sys
async def m():
    c = await asyncpg.connect(sys.argv[1])
    for n in ('gw_ledger_bench_a', 'gw_ledger_bench_b'): await c.execute(f'DROP DATABASE IF EXISTS {n}')
    await c.close()
asyncio.run(m())" "$ADMIN"
fi
