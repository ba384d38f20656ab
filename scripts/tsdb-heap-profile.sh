#!/usr/bin/env bash
# Where the Pharos server's heap peaks during `pharos-bench tsdb --pharos-only`: runs the bench
# with each start of the server wrapped in heaptrack (Debian package `heaptrack`), then prints
# the peak heap and its largest consumers with the Pharos source lines that allocated them.
# heaptrack sees malloc only, so PHAROS must be built with glibc's allocator:
#   cargo build --release -p pharos --features system-alloc --bin pharos   (then copy it aside)
# The bench's CPU and RSS figures are meaningless under heaptrack; only its profile counts.
# Usage: scripts/tsdb-heap-profile.sh PHAROS_SYSTEM_ALLOC_BINARY PHAROS_BENCH_BINARY [TARGETS]
set -euo pipefail
PHAROS=$(realpath "$1"); BENCH=$(realpath "$2"); TARGETS=${3:-100}
command -v heaptrack > /dev/null || { echo "heaptrack not found: apt-get install -y heaptrack" >&2; exit 2; }
WORK=$(mktemp -d)
# The bench starts the `pharos` next to it: a wrapper there runs the real one under heaptrack,
# one output file per start (the bench restarts the server to measure the disk).
cp "$BENCH" "$WORK/pharos-bench"
cat > "$WORK/pharos" <<EOF
#!/usr/bin/env bash
exec heaptrack -o "$WORK/heap.\$\$" "$PHAROS" "\$@"
EOF
chmod +x "$WORK/pharos"
"$WORK/pharos-bench" tsdb --targets "$TARGETS" --hours 2 --query-runs 5 --settled-runs 1 --pharos-only > "$WORK/bench.log" 2>&1 || true
# heaptrack does not pass the bench's SIGTERM on: stop the servers, then wait until heaptrack
# has written their profiles.
pkill -TERM -f "^$PHAROS serve" || true
while pgrep -f "$WORK/heap" > /dev/null; do sleep 0.5; done
# The start that ingests and answers the queries has by far the largest profile (that server
# also answers after the bench's "restart", whose own start exits within seconds).
FIRST=$(ls -S "$WORK"/heap.*.zst | head -1)
heaptrack_print -f "$FIRST" --print-peaks 1 --print-allocators 0 --print-temporary 0 --print-leaks 0 \
  --peak-limit 4 --sub-peak-limit 8 2> /dev/null > "$WORK/peaks.txt"
grep -E "peak heap memory consumption" "$WORK/peaks.txt"
# Each consumer with the first Pharos source lines of its backtrace.
awk '/consumed over/ {if (n) print line; line = $0; n = 0; next}
     /^ +at (collector|query|model|pharos|agent)\// && n < 3 {line = line " <- " $2; n++}
     END {if (n) print line}' "$WORK/peaks.txt"
echo "profiles and the full report: $WORK"
