#!/usr/bin/env bash
# Times Loki's `index/stats` (which Grafana calls for every Explore query) on a data directory
# kept by `pharos-bench logs --keep-dir DIR`, for each given `pharos` binary in turn (an A/B):
# 5 calls over the whole corpus, then one over its first half (a range that cuts splits), and
# the server's peak RSS. Prints each answer, so the binaries' can be compared.
# Usage: scripts/logs-stats-ab.sh KEEP_DIR PHAROS_BINARY [PHAROS_BINARY ...]
set -euo pipefail
DIR=$1; shift
[ -f "$DIR/pharos.yaml" ] || { echo "$DIR/pharos.yaml not found: pass a --keep-dir of pharos-bench logs" >&2; exit 2; }
read FIRST LAST < <(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["log_splits"]; print(min(x["min_ts_ns"] for x in s), max(x["max_ts_ns"] for x in s))' "$DIR/data/manifest.json")
MID=$(( (FIRST + LAST) / 2 ))
for BIN in "$@"; do
  "$BIN" serve --listen 127.0.0.1:19313 --config "$DIR/pharos.yaml" > "$DIR/stats-serve.log" 2>&1 &
  PID=$!
  until curl -sf http://127.0.0.1:19313/-/ready > /dev/null; do sleep 0.2; done
  SEL='query=%7Bcluster%3D%22bench%22%7D'
  T=""; for i in 1 2 3 4 5; do T="$T $(curl -s -o "$DIR/stats-out.json" -w '%{time_total}' "http://127.0.0.1:19313/loki/api/v1/index/stats?$SEL&start=$((FIRST-1))&end=$((LAST+1))")"; done
  FULL=$(cat "$DIR/stats-out.json")
  H=$(curl -s -w ' %{time_total}s' "http://127.0.0.1:19313/loki/api/v1/index/stats?$SEL&start=$((FIRST-1))&end=$MID")
  echo "$BIN: whole range, 5 calls (s):$T -> $FULL; first half: $H; peak RSS $(grep VmHWM /proc/$PID/status | awk '{print $2}') kB"
  kill $PID; wait $PID 2>/dev/null || true
done
