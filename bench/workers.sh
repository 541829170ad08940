#!/usr/bin/env bash
# Scale-out benchmark (issue 9): one process with memory limits against `--workers 2` with Redis
# limits, in one run, on the same machine, the same fake upstream and the same wrk load.
#
#   bash bench/workers.sh
#
# Reuses bench/upstream.py (the fast fake upstream), bench/setup_gateway.py (routes + a key with
# limits and prices on, so every request is admitted, booked and settled) and bench/post.lua.
# Starts a redis-server of its own on a free port (nothing else's data is touched). Prints one
# markdown table: requests/s, latency, and where the CPU went (gateway processes, wrk, the
# upstream, Redis), because on a small machine the load generator and the upstream share the
# cores with the gateway. Then the admission cost alone, memory against Redis (bench/admission.py).
#
# Knobs: DUR [8] seconds per run; WARM [2]; CONC [128] wrk connections (enough to keep two workers
#   busy while each request waits for Redis); WORKERS [2];
#   UP_PORT [18280] GW_PORT [18281] REDIS_PORT [18282]; BENCH_VENV [.venv of the repo]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
DUR="${DUR:-8}"; WARM="${WARM:-2}"; CONC="${CONC:-128}"; WORKERS="${WORKERS:-2}"
UP_PORT="${UP_PORT:-18280}"; GW_PORT="${GW_PORT:-18281}"; REDIS_PORT="${REDIS_PORT:-18282}"
BENCH_VENV="${BENCH_VENV:-$REPO/.venv}"
OUT="${OUT:-${TMPDIR:-/tmp}/gateway-bench-workers/$(date +%Y%m%d-%H%M%S)}"
PY="$BENCH_VENV/bin/python"
mkdir -p "$OUT"
log() { echo "[$(date +%T)] $*" >&2; }

if ! command -v wrk >/dev/null; then log "installing wrk"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; fi
if ! command -v redis-server >/dev/null; then
  log "installing redis-server"; apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
fi
[ -x "$PY" ] || { log "creating $BENCH_VENV"; python3 -m venv "$BENCH_VENV"; }
if [ "$(cd / && "$PY" -c 'import gateway, os; print(os.path.dirname(os.path.dirname(gateway.__file__)))' 2>/dev/null)" != "$REPO" ]; then
  log "installing the gateway into $BENCH_VENV"; "$PY" -m pip install -q -e "$REPO"
fi
ulimit -n 65536 2>/dev/null || true

PIDS=()
stop() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 150); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
}
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && stop "$p"; done; }
trap cleanup EXIT INT TERM
wait_up() { for _ in $(seq 200); do curl -s -o /dev/null -m 1 "$1" && return 0; sleep 0.1; done; log "no answer from $1"; return 1; }

# CPU ticks of a process and all its children (the workers), from /proc
tree_ticks() {
  local pid=$1 total=0 kid
  for kid in $pid $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    [ -r "/proc/$kid/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$kid/stat")))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

(cd "$OUT" && exec env PORT="$UP_PORT" "$PY" "$HERE/upstream.py" > upstream.log 2>&1) & UP_PID=$!; PIDS+=("$UP_PID")
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$OUT/redis.log" 2>&1 & REDIS_PID=$!
PIDS+=("$REDIS_PID")
wait_up "http://127.0.0.1:$UP_PORT/health"
REDIS="redis://127.0.0.1:$REDIS_PORT/0"
KEY=$(cd / && "$PY" "$HERE/setup_gateway.py" "$OUT/gw" "http://127.0.0.1:$UP_PORT/v1")
BODY="$OUT/body.json"
echo '{"model":"gpt-mock","messages":[{"role":"user","content":"Say hello"}],"max_tokens":32}' > "$BODY"
RESULTS="$OUT/results.jsonl"; : > "$RESULTS"

run() {  # name, then `gateway serve` flags
  local name=$1; shift
  redis-cli -p "$REDIS_PORT" flushall > /dev/null
  (cd "$OUT/gw" && exec "$BENCH_VENV/bin/gateway" serve --config routes.yaml --db gateway.db --port "$GW_PORT" \
     --no-access-log "$@" > "gateway-$name.log" 2>&1) &
  local gw=$!; PIDS+=("$gw")
  wait_up "http://127.0.0.1:$GW_PORT/health"
  BODY=$BODY KEY=$KEY EXPECT='' wrk -t1 -c"$CONC" -d"${WARM}s" -s "$HERE/post.lua" "http://127.0.0.1:$GW_PORT" > /dev/null
  local g0 u0 r0 line g1 u1 r1
  g0=$(tree_ticks "$gw"); u0=$(tree_ticks "$UP_PID"); r0=$(tree_ticks "$REDIS_PID")
  local TIMEFORMAT='%U %S'
  { time BODY=$BODY KEY=$KEY EXPECT='"content":"Hello from the mock upstream."' \
      wrk -t1 -c"$CONC" -d"${DUR}s" --timeout 10s -s "$HERE/post.lua" "http://127.0.0.1:$GW_PORT" \
      > "$OUT/wrk-$name.out" 2>&1 ; } 2> "$OUT/wrk-$name.time"
  g1=$(tree_ticks "$gw"); u1=$(tree_ticks "$UP_PID"); r1=$(tree_ticks "$REDIS_PID")
  line=$(sed -n 's/^RESULT //p' "$OUT/wrk-$name.out")
  secs() { awk -v a="$1" -v b="$2" -v h="$hz" 'BEGIN{print (b - a) / h}'; }
  echo "{\"name\":\"$name\",\"gw_s\":$(secs "$g0" "$g1"),\"up_s\":$(secs "$u0" "$u1"),\"redis_s\":$(secs "$r0" "$r1"),\"wrk_s\":$(awk '{print $1 + $2}' "$OUT/wrk-$name.time"),\"wrk\":$line}" >> "$RESULTS"
  log "  $name: $(echo "$line" | cut -c1-100)"
  stop "$gw"
}

log "results in $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
run memory-1 --limits memory
run redis-1 --limits "$REDIS"
run "redis-$WORKERS" --workers "$WORKERS" --limits "$REDIS"
run memory-1 --limits memory
run "redis-$WORKERS" --workers "$WORKERS" --limits "$REDIS"

"$PY" - "$RESULTS" "$WORKERS" "$(nproc)" <<'EOF' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
workers, cores = sys.argv[2], int(sys.argv[3])
best = {}
for r in rows:      # each configuration ran once or twice: keep its best run
    if r["name"] not in best or r["wrk"]["rps"] > best[r["name"]]["wrk"]["rps"]:
        best[r["name"]] = r
print(f"| run | requests/s | p50 ms | p99 ms | bad | gateway CPU ms/request | CPU share: gateway / wrk / upstream / redis |")
print("|---|---|---|---|---|---|---|")
for name, r in best.items():
    w = r["wrk"]; secs = w["secs"]; n = max(w["requests"], 1)
    shares = [r[k] / secs / cores * 100 for k in ("gw_s", "wrk_s", "up_s", "redis_s")]
    print(f"| {name} | {w['rps']:.0f} | {w['p50_ms']:.1f} | {w['p99_ms']:.1f} | {w['bad'] + w['socket_errors']} | "
          f"{r['gw_s'] / n * 1000:.3f} | " + " / ".join(f"{s:.0f}%" for s in shares) + " |")
one, many = best.get("memory-1"), best.get(f"redis-{workers}")
if one and many:
    print(f"\n--workers {workers} with Redis limits: {many['wrk']['rps'] / one['wrk']['rps']:.2f}x the requests/s of one "
          f"process with memory limits ({cores} cores; CPU shares are of all {cores} cores)")
EOF
log "admission alone (no HTTP): memory against Redis"
(cd / && "$PY" "$HERE/admission.py" memory) | tee -a "$OUT/table.md"
(cd / && "$PY" "$HERE/admission.py" "$REDIS") | tee -a "$OUT/table.md"
