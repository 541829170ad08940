#!/usr/bin/env bash
# Instructions per request: the gateway under valgrind's callgrind, a number the machine's load does not move.
#
#   bash bench/instructions.sh [KINDS...]          # KINDS default: ns s (chat non-stream, stream)
#
# CPU seconds per request (bench/run.sh) swing by 2-3x on a shared 2-core machine when other work
# runs; instruction counts do not (the same total twice, with the other core loaded). The gateway
# runs under callgrind with instrumentation off; after a warm-up, collection is switched on for REQS
# requests of one kind sent one at a time (bench/probe.py-style client below, outside valgrind),
# then off again, and the count is read from the dump. Everything the gateway process executes in
# between counts: the request path, the ledger writer's thread, timers. The fake upstream is
# bench/upstream.py, outside valgrind. Output: one JSON line per kind, instructions per request.
#
# COMMIT=<rev> measures that commit's gateway (its tree, importable first on PYTHONPATH) instead of
# the working tree, so two versions are compared by the same numbers (and the same fake upstream).
# Knobs: REQS [300] WARMUP [100] UP_PORT [18280] GW_PORT [18281] OUT [$TMPDIR/gateway-instr/<time>]
#        GATEWAY_ARGS [--no-access-log]; BENCH_VENV [.venv of the repo]
# Kinds: ns s (chat), mns ms (messages), rns rs (responses), emb (embeddings).
# SERVER=aiohttp|raw measures bench/floor.py's bare relay instead of the gateway (kind ns only).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
REQS="${REQS:-300}"; WARMUP="${WARMUP:-100}"; UP_PORT="${UP_PORT:-18280}"; GW_PORT="${GW_PORT:-18281}"
BENCH_VENV="${BENCH_VENV:-$REPO/.venv}"; PY="$BENCH_VENV/bin/python"
OUT="${OUT:-${TMPDIR:-/tmp}/gateway-instr/$(date +%Y%m%d-%H%M%S)}"
KINDS=("${@:-ns}"); [ $# -gt 0 ] || KINDS=(ns s)
mkdir -p "$OUT"
if [ -n "${COMMIT:-}" ]; then
  mkdir -p "$OUT/code"
  git -C "$REPO" archive "$COMMIT" gateway migrations bench/setup_gateway.py | tar -x -C "$OUT/code"
  [ -e "$OUT/code/gateway/migrations" ] || ln -s ../migrations "$OUT/code/gateway/migrations"
  export PYTHONPATH="$OUT/code"
  SETUP="$OUT/code/bench/setup_gateway.py"   # the bench set-up of that version: it speaks that code's API
fi
UP="http://127.0.0.1:$UP_PORT"; GW="http://127.0.0.1:$GW_PORT"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
wait_up() { for _ in $(seq 600); do curl -s -o /dev/null -m 1 "$1" && return 0; sleep 0.2; done; echo "no answer from $1" >&2; return 1; }

(cd "$OUT" && exec env PORT="$UP_PORT" CHUNKS="${CHUNKS:-20}" "$PY" "$HERE/upstream.py" > upstream.log 2>&1) &
PIDS+=($!)
wait_up "$UP/health"
KEY=$(cd / && "$PY" "${SETUP:-$HERE/setup_gateway.py}" "$OUT/gw" "$UP/v1")
if [ -n "${SERVER:-}" ]; then   # the floor instead of the gateway (bench/floor.py): aiohttp | raw
  (cd "$OUT/gw" && exec env UPSTREAM="$UP/v1" PORT="$GW_PORT" valgrind --tool=callgrind --instr-atstart=no \
     --callgrind-out-file="$OUT/callgrind.%p" "$BENCH_VENV/bin/python" "$HERE/floor.py" "$SERVER" > gateway.log 2>&1) &
else
(cd "$OUT/gw" && exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.%p" \
   "$BENCH_VENV/bin/python" -m gateway serve --config routes.yaml --db gateway.db --port "$GW_PORT" \
   ${GATEWAY_ARGS---no-access-log} > gateway.log 2>&1) &
fi
GW_PID=$!; PIDS+=("$GW_PID")
wait_up "$GW/health"

send() {  # kind count: requests one at a time, each checked whole
  "$PY" - "$GW" "$KEY" "$1" "$2" <<'EOF'
import json, sys, urllib.request
gw, key, kind, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
chat = {"model": "gpt-mock", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 32}
msgs = {"model": "gpt-mock", "max_tokens": 32, "messages": [{"role": "user", "content": "Say hello"}]}
resp = {"model": "gpt-mock", "max_output_tokens": 32, "input": "Say hello", "store": False}
bodies = {"ns": ("/v1/chat/completions", chat, b"Hello from the mock"),
          "s": ("/v1/chat/completions", {**chat, "stream": True, "stream_options": {"include_usage": True}}, b"[DONE]"),
          "mns": ("/v1/messages", msgs, b"end_turn"), "ms": ("/v1/messages", {**msgs, "stream": True}, b"message_stop"),
          "rns": ("/v1/responses", resp, b"completed"), "rs": ("/v1/responses", {**resp, "stream": True}, b"response.completed"),
          "emb": ("/v1/embeddings", {"model": "gpt-mock", "input": "Say hello"}, b'"object":"list"')}
path, body, expect = bodies[kind]
data = json.dumps(body).encode()
for _ in range(count):
    req = urllib.request.Request(gw + path, data=data, headers={"Authorization": f"Bearer {key}",
                                                                "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        got = r.read()
    assert expect in got, got[:300]
EOF
}

for kind in "${KINDS[@]}"; do
  send "$kind" "$WARMUP"
  rm -f "$OUT"/callgrind.*.*
  callgrind_control -i on "$GW_PID" > /dev/null
  callgrind_control -z "$GW_PID" > /dev/null
  send "$kind" "$REQS"
  callgrind_control -i off "$GW_PID" > /dev/null
  callgrind_control -d "$GW_PID" > /dev/null
  sleep 1
  total=$(cat "$OUT"/callgrind.*.* | awk '/^totals:/ {s += $2} END {printf "%d", s}')
  echo "{\"kind\": \"$kind\", \"requests\": $REQS, \"instructions\": $total, \"per_request\": $((total / REQS))}"
done
