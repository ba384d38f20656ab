#!/usr/bin/env bash
# Runs Pharos on this machine with embedded defaults and live data: the control plane on
# http://127.0.0.1:9494/ plus an embedded agent scraping Pharos' own /metrics and tailing sample
# pod logs. No Kafka or other service needed. Extra arguments go to `pharos up`
# (e.g. --listen 0.0.0.0:9494 --data-dir /tmp/pharos).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
cargo build --release --locked -p pharos
exec target/release/pharos up "$@"
