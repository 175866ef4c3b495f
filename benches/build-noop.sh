#!/usr/bin/env bash
# End to end: `nexis build` of the generated target-size system (50 modules, 1,000
# packages, 200 services, 50 users; trivial script recipes, so every build is real and
# sandboxed but takes milliseconds), then the same command again when every output is
# valid: the no-op rebuild, evaluation included (target: under 100 ms).
#
#   benches/build-noop.sh [REPEATS]   (default 5; the no-op figure is the median)
#
# Needs cargo and GNU time at /usr/bin/time (optional, peak RSS). Works under a
# temporary directory in $BENCH_DIR (default /var/tmp), removed at exit.

set -euo pipefail

REPEATS=${1:-5}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BASE=${BENCH_DIR:-/var/tmp}
WORK=$(mktemp -d "$BASE/nexis-build-bench.XXXXXX")
cleanup() {
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=benches/lib.sh
source "$ROOT_DIR/benches/lib.sh"

cd "$ROOT_DIR"
cargo build --release -q -p nexis-cli -p nexis-benches --bin nexis --bin gen-system
NEXIS=$ROOT_DIR/target/release/nexis
"$ROOT_DIR/target/release/gen-system" "$WORK/system"
CONFIG=$WORK/system/nexis.toml
nexis() { "$NEXIS" --root "$WORK/root" --config "$CONFIG" "$@"; }

paths=$(nexis build --dry-run --json | grep -c '/nexis/store/')
echo "closure to build: $paths paths"
start=$(date +%s.%N)
nexis build --no-link >/dev/null 2>&1
end=$(date +%s.%N)
total=$(echo "$end - $start" | bc -l)
printf 'first build: %.3f s, %.2f ms per build (wall, %s jobs)\n' "$total" \
    "$(echo "$total * 1000 / $paths" | bc -l)" "$(nproc)"

times=()
for _ in $(seq "$REPEATS"); do
    s=$(date +%s.%N)
    nexis build --no-link >/dev/null
    e=$(date +%s.%N)
    times+=("$(echo "$e - $s" | bc -l)")
done
printf 'no-op build (median of %s): %.1f ms\n' "$REPEATS" "$(echo "$(echo "${times[*]}" | median) * 1000" | bc -l)"
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f 'no-op peak RSS: %M KiB' "$NEXIS" --root "$WORK/root" --config "$CONFIG" build --no-link >/dev/null
fi
