#!/usr/bin/env bash
# Where the gateway's CPU goes under load: py-spy samples `gateway serve` while wrk drives one kind
# of request at c32 (bench/upstream.py as the upstream, the bench routes, auth, limits and ledger on).
#
#   bash bench/profile.sh [KIND] [SECONDS]      # KIND: ns (chat, default) | s (chat stream)
#
# Prints tables (bench/profile.py) by module, by function and by inclusive share; the raw profile
# stays in $OUT. py-spy is installed into the bench virtualenv when missing. Shares, not times:
# on a shared machine the absolute numbers drift, the proportions much less.
# Knobs: UP_PORT [18480] GW_PORT [18481] GATEWAY_ARGS [--no-access-log] OUT [$TMPDIR/gateway-profile/<time>]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"; REPO="$(cd "$HERE/.." && pwd)"
KIND="${1:-ns}"; SECS="${2:-12}"; UP_PORT="${UP_PORT:-18480}"; GW_PORT="${GW_PORT:-18481}"
BENCH_VENV="${BENCH_VENV:-$REPO/.venv}"; PY="$BENCH_VENV/bin/python"
OUT="${OUT:-${TMPDIR:-/tmp}/gateway-profile/$(date +%Y%m%d-%H%M%S)}"; mkdir -p "$OUT"
[ -x "$BENCH_VENV/bin/py-spy" ] || "$PY" -m pip install -q py-spy
PIDS=(); trap 'for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done' EXIT INT TERM
wait_up() { for _ in $(seq 200); do curl -s -o /dev/null -m 1 "$1" && return 0; sleep 0.1; done; return 1; }
(cd "$OUT" && exec env PORT="$UP_PORT" CHUNKS=20 "$PY" "$HERE/upstream.py" > upstream.log 2>&1) & PIDS+=($!)
wait_up "http://127.0.0.1:$UP_PORT/health"
KEY=$(cd / && "$PY" "$HERE/setup_gateway.py" "$OUT/gw" "http://127.0.0.1:$UP_PORT/v1")
(cd "$OUT/gw" && exec "$PY" -m gateway serve --config routes.yaml --db gateway.db --port "$GW_PORT" \
   ${GATEWAY_ARGS---no-access-log} > gateway.log 2>&1) & GW_PID=$!; PIDS+=("$GW_PID")
wait_up "http://127.0.0.1:$GW_PORT/health"
case $KIND in
  ns) echo '{"model":"gpt-mock","messages":[{"role":"user","content":"Say hello"}],"max_tokens":32}' > "$OUT/body.json" ;;
  s) echo '{"model":"gpt-mock","messages":[{"role":"user","content":"Say hello"}],"max_tokens":32,"stream":true,"stream_options":{"include_usage":true}}' > "$OUT/body.json" ;;
  *) echo "KIND is ns or s" >&2; exit 2 ;;
esac
drive() { BODY="$OUT/body.json" KEY=$KEY wrk -t1 -c32 -d"$1s" -s "$HERE/post.lua" "http://127.0.0.1:$GW_PORT" | sed -n 's/^RESULT //p'; }
drive 2 > /dev/null
drive $((SECS + 2)) > "$OUT/wrk.json" & DRIVE=$!
sleep 1
top -H -b -d 4 -n 2 -p "$GW_PID" | tail -8 > "$OUT/threads.txt" &
"$BENCH_VENV/bin/py-spy" record -p "$GW_PID" -d "$SECS" -r 500 -f raw -o "$OUT/profile.raw" > /dev/null 2>&1
wait "$DRIVE"
cat "$OUT/threads.txt"; echo "kind $KIND, $(cat "$OUT/wrk.json" | cut -c1-80), raw profile $OUT/profile.raw"
for by in module function caller; do echo; "$PY" "$HERE/profile.py" "$OUT/profile.raw" --by "$by" --top 20; done
