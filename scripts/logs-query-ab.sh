#!/usr/bin/env bash
# Times the four queries of `pharos-bench logs` against a data directory the bench kept
# (`pharos-bench logs --keep-dir DIR`), with a given `pharos` binary: run it with two builds,
# alternating, to compare them on the same splits (A/B). Prints p50 and min of RUNS curl
# requests per query, and the p50 of the execTime the server reports in them (evaluation only,
# without writing the answer or HTTP), after one unmeasured request, once the split term lists
# are loaded (and the CPU time that loading them took).
# Usage: scripts/logs-query-ab.sh PHAROS_BINARY KEEP_DIR [RUNS] [PORT]
set -euo pipefail
BIN=$1; DIR=$2; RUNS=${3:-21}; PORT=${4:-19311}
[ -f "$DIR/pharos.yaml" ] || { echo "$DIR/pharos.yaml not found: pass a --keep-dir of pharos-bench logs" >&2; exit 2; }
"$BIN" serve --listen "127.0.0.1:$PORT" --config "$DIR/pharos.yaml" > "$DIR/ab-serve.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
until curl -sf "http://127.0.0.1:$PORT/-/ready" > /dev/null; do
  kill -0 $PID 2>/dev/null || { echo "pharos exited; see $DIR/ab-serve.log" >&2; exit 1; }
  sleep 0.2
done
# The term lists are loaded in the background after a start: wait until their size holds still,
# and report the server's CPU time (utime+stime from /proc) from ready until then.
metric() { curl -s "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
c0=$(cpu_ticks)
prev=-1
while true; do
  cur=$(metric pharos_collector_log_term_cache_bytes)
  [ "$cur" = "$prev" ] && [ "${cur:-0}" != "0" ] && break
  prev=$cur; sleep 0.5
done
echo "term lists loaded: $(( ($(cpu_ticks) - c0) * 1000 / $(getconf CLK_TCK) )) CPU-ms, $cur bytes"
# The corpus' time range and the Trino query id the bench queries, from the manifest and a line.
read -r FIRST LAST < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["log_splits"]; print(min(x["min_ts_ns"] for x in s), max(x["max_ts_ns"] for x in s))' "$DIR/data/manifest.json")
QID=$(grep -m1 -ohE 'Query [0-9]{8}_[0-9]{6}_[0-9]{5}_[a-z0-9]{5}' "$DIR"/raw/stream-*.log | head -1 | cut -d' ' -f2)
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
run() {
  local name=$1 url=$2 out=() args=()
  curl -sf -o /dev/null "$url"
  # Per request: the server's own execTime (evaluation, before the answer is written) and the
  # whole request as curl saw it. One curl for all runs, reusing its connection as the bench's
  # client does (a curl started per request also competes with the server for two cores).
  for _ in $(seq "$RUNS"); do
    args+=(-w '\n%{time_total}\n' "$url")
  done
  mapfile -t out < <(curl -sf "${args[@]}" | paste - - | sed -E 's/.*"execTime":([0-9.eE+-]+).*\t([0-9.]+)$/\1 \2/')
  local m=$(( (RUNS + 1) / 2 )) t e
  t=$(printf '%s\n' "${out[@]}" | awk '{print $2}' | sort -g)
  e=$(printf '%s\n' "${out[@]}" | awk '{print $1}' | sort -g)
  printf '%-7s p50 %.2f ms  min %.2f ms  (server execTime p50 %.2f ms)\n' "$name" \
    "$(sed -n "${m}p" <<< "$t" | awk '{print $1 * 1000}')" "$(head -1 <<< "$t" | awk '{print $1 * 1000}')" \
    "$(sed -n "${m}p" <<< "$e" | awk '{print $1 * 1000}')"
}

Q="http://127.0.0.1:$PORT/loki/api/v1/query_range"
R="start=$((FIRST - 1))&end=$((LAST + 1))"
run rare "$Q?query=$(enc '{cluster="bench"} |= "ZQXV9RARE"')&$R&limit=100&direction=backward"
run phrase "$Q?query=$(enc '{cluster="bench"} |= "disk quota exceeded for tenant acme"')&$R&limit=100000&direction=backward"
run id "$Q?query=$(enc "{cluster=\"bench\"} |= \"$QID\"")&$R&limit=100000&direction=backward"
run volume "$Q?query=$(enc 'sum(count_over_time({cluster="bench"} |= "OutOfMemoryError" [1m]))')&start=$((FIRST / 60000000000 * 60 + 60))&end=$((LAST / 60000000000 * 60 + 120))&step=60"
