#!/usr/bin/env bash
# Installs what building and testing Pharos needs on a fresh Debian machine: the C toolchain
# pieces librdkafka's build uses (cmake, libcurl headers), the mold linker, cargo-nextest, and
# the tansu broker (pinned wheel), and the peers tests and benchmarks run against (prometheus,
# promtool, prometheus-node-exporter, victoria-metrics). Idempotent: does nothing already done.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v victoria-metrics >/dev/null || need+=(victoria-metrics)
command -v prometheus-node-exporter >/dev/null || need+=(prometheus-node-exporter)
command -v cmake >/dev/null || need+=(cmake)
command -v mold >/dev/null || need+=(mold)
command -v rg >/dev/null || need+=(ripgrep)
command -v g++ >/dev/null || need+=(g++)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "bootstrap: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
"$ROOT/scripts/install-tansu.sh" >/dev/null
