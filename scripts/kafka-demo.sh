#!/usr/bin/env bash
# The Kafka path on one machine: a tansu broker (in-memory storage), `pharos serve` consuming it,
# and `pharos-agent` scraping Pharos' own /metrics and tailing ./data-kafka-demo/pods, shipping
# through Kafka. Ctrl-C stops all three. Needs a release build (scripts/up.sh makes one).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
cargo build --release --locked --bins
TANSU="$(scripts/install-tansu.sh)"
DIR="${PHAROS_DEMO_DIR:-$ROOT/data-kafka-demo}"
mkdir -p "$DIR/pods/demo_kafka-demo-0_uid/app"
BROKER=127.0.0.1:9092
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$TANSU" broker --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" \
  --storage-engine memory://tansu/ >"$DIR/tansu.log" 2>&1 & pids+=($!)
target/release/pharos serve --listen 127.0.0.1:9494 --data-dir "$DIR/data" --kafka-brokers "$BROKER" & pids+=($!)
cat >"$DIR/agent.yaml" <<YAML
cluster: demo
listen: 127.0.0.1:9495
data_dir: $DIR/agent
scrape:
  interval_ms: 5000
  targets:
    - url: http://127.0.0.1:9494/metrics
      job: pharos
logs:
  include: ["$DIR/pods/*/*/*.log"]
sink:
  kafka:
    brokers: $BROKER
YAML
target/release/pharos-agent --config "$DIR/agent.yaml" & pids+=($!)
echo "Kafka demo: http://127.0.0.1:9494/ — append CRI lines to $DIR/pods/demo_kafka-demo-0_uid/app/0.log"
wait
