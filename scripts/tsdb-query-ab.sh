#!/usr/bin/env bash
# Times the range queries of `pharos-bench tsdb` against a data directory the bench kept
# (`pharos-bench tsdb --keep` prints it), with several `pharos` builds, alternating, to compare
# them on the same files (A/B). Each round starts each binary on a fresh copy of the data
# directory, sends each query once unmeasured, then RUNS times over one connection, and prints
# per query the p50 of the request time (curl) and the server's CPU time per run (utime+stime
# from /proc).
# Usage: scripts/tsdb-query-ab.sh KEEP_DIR RUNS ROUNDS PHAROS_BINARY [PHAROS_BINARY...]
set -euo pipefail
DIR=$1; RUNS=$2; ROUNDS=$3; shift 3
PORT=${PORT:-19312}
[ -f "$DIR/pharos-data/manifest.json" ] || { echo "$DIR/pharos-data/manifest.json not found: pass a directory kept by pharos-bench tsdb --keep" >&2; exit 2; }
WORK=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
# The data's time range from the manifest; queries end 7 s after the last sample, as the bench's.
read -r FIRST LAST < <(python3 -c 'import json,sys; f=json.load(open(sys.argv[1]))["metric_files"]; print(min(x["min_ts_ms"] for x in f)//1000, max(x["max_ts_ms"] for x in f)//1000)' "$DIR/pharos-data/manifest.json")
END=$((LAST + 7))
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
QUERIES=(
  'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
  '1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes'
  'topk(5, rate(node_network_receive_bytes_total[5m]))'
  'sum(rate(node_disk_written_bytes_total[5m]))'
)
cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) * 1000 / hz}' "/proc/$PID/stat"; }
run() {
  local label=$1 url=$2 times=() c0 c1 args=()
  curl -sf -o /dev/null "$url"
  # One curl for all runs, reusing its connection as the bench's client does (a curl started
  # per request also competes with the server for this machine's two cores).
  for _ in $(seq "$RUNS"); do
    args+=(-o /dev/null -w '%{time_total}\n' "$url")
  done
  c0=$(cpu_ms)
  mapfile -t times < <(curl -sf "${args[@]}")
  c1=$(cpu_ms)
  local p50
  p50=$(printf '%s\n' "${times[@]}" | sort -g | sed -n "$(( (RUNS + 1) / 2 ))p")
  printf '  %7.1f ms %7.1f CPU-ms  %s\n' "$(awk -v t="$p50" 'BEGIN {print t * 1000}')" \
    "$(awk -v a="$c0" -v b="$c1" -v n="$RUNS" 'BEGIN {print (b - a) / n}')" "$label"
}
for round in $(seq "$ROUNDS"); do
  for BIN in "$@"; do
    rm -rf "$WORK/data" && cp -a "$DIR/pharos-data" "$WORK/data"
    sed "s|$DIR/pharos-data|$WORK/data|" "$DIR/pharos.yaml" > "$WORK/pharos.yaml"
    "$BIN" serve --listen "127.0.0.1:$PORT" --config "$WORK/pharos.yaml" > "$WORK/serve.log" 2>&1 &
    PID=$!
    until curl -sf "http://127.0.0.1:$PORT/-/ready" > /dev/null; do
      kill -0 $PID 2>/dev/null || { echo "pharos exited:" >&2; cat "$WORK/serve.log" >&2; exit 1; }
      sleep 0.2
    done
    echo "round $round: $BIN"
    for q in "${QUERIES[@]}"; do
      Q="http://127.0.0.1:$PORT/api/v1/query_range?query=$(enc "$q")&step=60"
      run "range 1h $q" "$Q&start=$((END - 3600))&end=$END"
      run "range full $q" "$Q&start=$FIRST&end=$END"
    done
    kill $PID; wait $PID 2>/dev/null || true; PID=
  done
done
