#!/usr/bin/env bash
# The whole test suite, installing what it needs: unit tests of every crate and the end-to-end
# tests in tests/ that run the real binaries against a real Kafka-protocol broker (tansu).
# Usage: scripts/test.sh [extra cargo-nextest args]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
export PHAROS_TANSU="$("$ROOT/scripts/install-tansu.sh")"
# One debug build of everything (binaries first: the end-to-end tests start them as processes).
cargo build --workspace --bins --tests --locked
cargo nextest run --workspace --locked --no-fail-fast "$@"
cargo test --workspace --doc --locked
