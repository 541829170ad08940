#!/usr/bin/env bash
# The benchmark: our gateway against a fast fake upstream, direct vs through the gateway, one table.
#
#   bash bench/run.sh
#
# From a fresh clone it installs what it needs: wrk (Debian's package) and the gateway in a
# virtualenv. Then it starts bench/upstream.py and `gateway serve` on a bench routes.yaml with
# auth, limits and the ledger on, drives load with wrk (bench/post.lua) and bench/probe.py, and
# prints one markdown table (bench/report.py). Takes about four minutes.
#
# Knobs (env, defaults in brackets):
#   DUR [5] seconds per wrk measurement; WARM [1] warm-up seconds; CONC [32] concurrency
#   CHUNKS [20] content chunks per stream; PROBES [300] streams timed for the first chunk
#   HOLD [1000] streams held open at once, HOLD_SECS [8] for how long
#   MANY_KEYS [10000] MANY_ROUTES [500] for the table-size runs; VROUNDS [2] rounds of those variant runs
#   APIROUNDS [3] interleaved rounds of the other client APIs beside chat (two swung by 10 points run to run)
#   ONLY [all]: "main" skips the variant runs and the held streams
#   UP_PORT [18180] GW_PORT [18181]; BENCH_VENV [.venv of the repo]; OUT [$TMPDIR/gateway-bench/<time>]
#   GATEWAY_ARGS extra `gateway serve` flags (default none: the gateway's own defaults, access log on, as
#   issue 19's targets are stated; the access_log_off variant adds --no-access-log);
#   with --workers N, CPU and VmHWM are summed over the processes
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
DUR="${DUR:-5}"; WARM="${WARM:-1}"; CONC="${CONC:-32}"; CHUNKS="${CHUNKS:-20}"; PROBES="${PROBES:-300}"
HOLD="${HOLD:-1000}"; HOLD_SECS="${HOLD_SECS:-8}"; MANY_KEYS="${MANY_KEYS:-10000}"; MANY_ROUTES="${MANY_ROUTES:-500}"
VROUNDS="${VROUNDS:-2}"; APIROUNDS="${APIROUNDS:-3}"; ONLY="${ONLY:-all}"; UP_PORT="${UP_PORT:-18180}"; GW_PORT="${GW_PORT:-18181}"
BENCH_VENV="${BENCH_VENV:-$REPO/.venv}"
OUT="${OUT:-${TMPDIR:-/tmp}/gateway-bench/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
PY="$BENCH_VENV/bin/python"
UP="http://127.0.0.1:$UP_PORT"; GW="http://127.0.0.1:$GW_PORT"
RESULTS="$OUT/results.jsonl"; : > "$RESULTS"
log() { echo "[$(date +%T)] $*" >&2; }

# ---- install -------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
  log "installing wrk"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
[ -x "$PY" ] || { log "creating $BENCH_VENV"; python3 -m venv "$BENCH_VENV"; }
if [ "$(cd / && "$PY" -c 'import gateway, os; print(os.path.dirname(os.path.dirname(gateway.__file__)))' 2>/dev/null)" != "$REPO" ]; then
  log "installing the gateway into $BENCH_VENV"; "$PY" -m pip install -q -e "$REPO"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

# ---- processes -------------------------------------------------------------------------------
PIDS=()
stop() {  # pid: TERM, then KILL after 10 s
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && stop "$p"; done; }
trap cleanup EXIT INT TERM

wait_up() {  # url
  for _ in $(seq 200); do curl -s -o /dev/null -m 1 "$1" && return 0; sleep 0.1; done
  log "no answer from $1"; return 1
}

start_gateway() {  # dir [env assignments...]; sets GW_PID
  local dir=$1; shift
  (cd "$dir" && exec env "$@" "$BENCH_VENV/bin/gateway" serve --config routes.yaml --db gateway.db \
     --port "$GW_PORT" ${GATEWAY_ARGS-} > gateway.log 2>&1) &
  GW_PID=$!; PIDS+=("$GW_PID")
  wait_up "$GW/health"
}

tree() { echo "$1" $(ps -o pid= --ppid "$1"); }   # the gateway and its workers (GATEWAY_ARGS=--workers N)
cpu_ticks() { for p in $(tree "$1"); do cat "/proc/$p/stat"; done | awk '{s += $14 + $15} END {print s}'; }
status_kb() { for p in $(tree "$1"); do cat "/proc/$p/status"; done | awk -v f="$2:" '$1 == f {s += $2} END {print s}'; }
hz() { getconf CLK_TCK; }

BODY_NS="$OUT/body_ns.json"; BODY_S="$OUT/body_s.json"
echo '{"model":"gpt-mock","messages":[{"role":"user","content":"Say hello"}],"max_tokens":32}' > "$BODY_NS"
echo '{"model":"gpt-mock","messages":[{"role":"user","content":"Say hello"}],"max_tokens":32,"stream":true,"stream_options":{"include_usage":true}}' > "$BODY_S"
EXPECT_NS='"content":"Hello from the mock upstream."'; EXPECT_S='data: [DONE]'
BODY_MNS="$OUT/body_mns.json"; BODY_MS="$OUT/body_ms.json"   # the same request through /v1/messages
echo '{"model":"gpt-mock","max_tokens":32,"messages":[{"role":"user","content":"Say hello"}]}' > "$BODY_MNS"
echo '{"model":"gpt-mock","max_tokens":32,"messages":[{"role":"user","content":"Say hello"}],"stream":true}' > "$BODY_MS"
BODY_RNS="$OUT/body_rns.json"; BODY_RS="$OUT/body_rs.json"   # and through /v1/responses
echo '{"model":"gpt-mock","max_output_tokens":32,"input":"Say hello","store":false}' > "$BODY_RNS"
echo '{"model":"gpt-mock","max_output_tokens":32,"input":"Say hello","store":false,"stream":true}' > "$BODY_RS"
BODY_EMB="$OUT/body_emb.json"   # and /v1/embeddings
echo '{"model":"gpt-mock","input":"Say hello"}' > "$BODY_EMB"
BODY_BIG="$OUT/body_big.json"   # a 10 KB prompt: what costs per byte shows here
"$PY" -c 'import json, sys; text = "The quick brown fox jumps over the lazy dog, then writes 42 lines of Python code; " * 120
json.dump({"model": "gpt-mock", "max_tokens": 32, "messages": [{"role": "system", "content": "You are a helpful assistant."},
           {"role": "user", "content": text}]}, open(sys.argv[1], "w"))' "$BODY_BIG"

load() {  # url key body expect conc secs [path] -> wrk's RESULT json
  BODY=$3 KEY=$2 EXPECT=$4 WRK_PATH=${7:-/v1/chat/completions} wrk -t1 -c"$5" -d"${6}s" --timeout 10s -s "$HERE/post.lua" "$1" 2>&1 \
    | sed -n 's/^RESULT //p'
}

measure() {  # name url key kind(ns|s) conc [pid]: one wrk run, one result line (with CPU of pid)
  local name=$1 url=$2 key=$3 kind=$4 conc=$5 pid=${6:-} body expect path=/v1/chat/completions c0=0 c1=0 line
  case $kind in ns) body=$BODY_NS; expect=$EXPECT_NS ;; big) body=$BODY_BIG; expect=$EXPECT_NS ;;
    mns) body=$BODY_MNS; expect='"stop_reason":"end_turn"'; path=/v1/messages ;;
    ms) body=$BODY_MS; expect='event: message_stop'; path=/v1/messages ;;
    rns) body=$BODY_RNS; expect='"status":"completed"'; path=/v1/responses ;;
    rs) body=$BODY_RS; expect='event: response.completed'; path=/v1/responses ;;
    emb) body=$BODY_EMB; expect='"object":"list"'; path=/v1/embeddings ;;
    *) body=$BODY_S; expect=$EXPECT_S ;; esac
  [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
  line=$(load "$url" "$key" "$body" "$expect" "$conc" "$DUR" "$path")
  [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
  [ -n "$line" ] || line='{"requests":0,"rps":0,"bad":1,"socket_errors":0,"sample":"wrk gave no result"}'
  echo "{\"name\":\"$name\",\"kind\":\"$kind\",\"conc\":$conc,\"cpu_s\":$(awk -v a="$c0" -v b="$c1" -v h="$(hz)" 'BEGIN{print (b-a)/h}'),\"wrk\":$line}" >> "$RESULTS"
  log "  $name $kind c$conc: $(echo "$line" | cut -c1-110)"
}

record() { echo "$1" >> "$RESULTS"; }

# ---- run -------------------------------------------------------------------------------------
record "{\"name\":\"env\",\"load_before\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"dur\":$DUR,\"conc\":$CONC,\"chunks\":$CHUNKS}"
log "results in $OUT; load average $(cut -d' ' -f1-3 /proc/loadavg)"
(cd "$OUT" && exec env PORT="$UP_PORT" CHUNKS="$CHUNKS" HOLD_SECS="$HOLD_SECS" "$PY" "$HERE/upstream.py" > upstream.log 2>&1) &
UP_PID=$!; PIDS+=("$UP_PID")
wait_up "$UP/health"

KEY=$(cd / && "$PY" "$HERE/setup_gateway.py" "$OUT/main" "$UP/v1")
start_gateway "$OUT/main"
log "gateway up (pid $GW_PID)"
load "$UP" x "$BODY_NS" "" "$CONC" "$WARM" > /dev/null
load "$GW" "$KEY" "$BODY_NS" "" "$CONC" "$WARM" > /dev/null
for run in "ns $CONC" "ns 1" "s $CONC" "s 1" "big $CONC"; do
  set -- $run
  measure direct "$UP" x "$1" "$2"
  measure gateway "$GW" "$KEY" "$1" "$2" "$GW_PID"
done
for _ in $(seq "$APIROUNDS"); do   # other client APIs beside chat's CPU per request, interleaved (the report takes medians)
  for kind in ns mns rns emb s ms rs; do measure api "$GW" "$KEY" "$kind" "$CONC" "$GW_PID"; done
done
record "{\"name\":\"gateway\",\"kind\":\"rss\",\"hwm_kb\":$(status_kb "$GW_PID" VmHWM)}"
log "time to first chunk, $PROBES streams one at a time"
record "{\"name\":\"direct\",\"kind\":\"ttfc\",\"probe\":$(cd / && "$PY" "$HERE/probe.py" ttfc "$UP" x gpt-mock-ttfc "$PROBES")}"
record "{\"name\":\"gateway\",\"kind\":\"ttfc\",\"probe\":$(cd / && "$PY" "$HERE/probe.py" ttfc "$GW" "$KEY" gpt-mock-ttfc "$PROBES")}"
stop "$GW_PID"

if [ "$ONLY" != main ]; then
  log "held streams: $HOLD at once for ${HOLD_SECS}s"
  start_gateway "$OUT/main"
  record "{\"name\":\"gateway\",\"kind\":\"hold\",\"probe\":$(cd / && "$PY" "$HERE/probe.py" hold "$GW" "$KEY" gpt-mock-hold "$HOLD" "$GW_PID")}"
  stop "$GW_PID"

  log "variants: non-stream c$CONC, a fresh gateway each"
  KEYS_KEY=$(cd / && "$PY" "$HERE/setup_gateway.py" "$OUT/keys" "$UP/v1" --keys "$MANY_KEYS")
  ROUTES_KEY=$(cd / && "$PY" "$HERE/setup_gateway.py" "$OUT/routes" "$UP/v1" --routes "$MANY_ROUTES")
  variant() {  # name dir key [env...]
    local name=$1 dir=$2 key=$3; shift 3
    start_gateway "$dir" "$@"
    load "$GW" "$key" "$BODY_NS" "" "$CONC" "$WARM" > /dev/null
    measure "$name" "$GW" "$key" ns "$CONC" "$GW_PID"
    stop "$GW_PID"
  }
  for _ in $(seq "$VROUNDS"); do   # interleaved rounds: the report takes medians, so a burst of load spoils one
    variant base "$OUT/main" "$KEY"
    variant ledger_off "$OUT/main" "$KEY" GATEWAY_BENCH_LEDGER_OFF=1
    variant keys "$OUT/keys" "$KEYS_KEY"
    variant routes "$OUT/routes" "$ROUTES_KEY"
    GATEWAY_ARGS="--no-access-log" variant access_log_off "$OUT/main" "$KEY"
  done
  variant base "$OUT/main" "$KEY"
fi

record "{\"name\":\"env\",\"load_after\":\"$(cut -d' ' -f1-3 /proc/loadavg)\",\"many_keys\":$MANY_KEYS,\"many_routes\":$MANY_ROUTES,\"hold\":$HOLD}"
stop "$UP_PID"
"$PY" "$HERE/report.py" "$RESULTS" | tee "$OUT/table.md"
