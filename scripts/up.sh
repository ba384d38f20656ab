#!/usr/bin/env bash
# Runs Pharos on this machine with live data from a simulated data platform, no external
# services: the telemetry simulator (pharos-sim: a cluster of nodes, teams, Spark applications
# and Trino queries, in the real formats), the control plane on http://127.0.0.1:9494/, and a
# node agent wired to the simulator (scrapes, pod logs, Spark event logs, Trino query events).
# Ctrl-C stops all three. Environment: PHAROS_DEMO_DIR (default ./demo), PHAROS_LISTEN
# (default 127.0.0.1:9494), SIM_NODES (default 3), SIM_SEED (default 42).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
cargo build --release --locked --bins
DIR="$(mkdir -p "${PHAROS_DEMO_DIR:-$ROOT/demo}" && cd "${PHAROS_DEMO_DIR:-$ROOT/demo}" && pwd)"
LISTEN="${PHAROS_LISTEN:-127.0.0.1:9494}"
BIN="$ROOT/target/release"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT INT TERM
"$BIN/pharos" serve --listen "$LISTEN" --data-dir "$DIR/data" >"$DIR/pharos.log" 2>&1 & pids+=($!)
"$BIN/pharos-sim" --seed "${SIM_SEED:-42}" --nodes "${SIM_NODES:-3}" --listen 127.0.0.1:9700 \
  --out-dir "$DIR/sim" --trino-events-url http://127.0.0.1:9495/v1/trino/events \
  --write-agent-config "$DIR/agent.yaml" --collector-url "http://$LISTEN" \
  --agent-listen 127.0.0.1:9495 --agent-data-dir "$DIR/agent" >"$DIR/sim.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do [ -f "$DIR/agent.yaml" ] && break; sleep 0.1; done
"$BIN/pharos-agent" --config "$DIR/agent.yaml" >"$DIR/agent.log" 2>&1 & pids+=($!)
cat <<MSG
Pharos is up on http://$LISTEN/ with a simulated cluster (logs of all three processes in $DIR).
Try:
  http://$LISTEN/api/v1/query?query=sum by (team) (rate(container_cpu_usage_seconds_total[5m]))
  http://$LISTEN/api/v1/query?query=sum by (team) (spark_app_task_cpu_time_seconds_total)
  http://$LISTEN/api/v1/query?query=topk(5, trino_query_cpu_seconds)
  http://$LISTEN/loki/api/v1/query_range?query={namespace=~"spark-.*"} |= "Exception"
Grafana: add Prometheus and Loki data sources with URL http://$LISTEN
MSG
wait -n "${pids[@]}"
