#!/usr/bin/env bash
# End to end: `nexis build` of the generated target-size system (50 modules, 1,000
# packages, 200 services, 50 users; trivial script recipes, so every build is real and
# sandboxed but takes milliseconds), then the same command again when every output is
# valid: the no-op rebuild, evaluation included (target: under 100 ms). Then `nexis
# switch` of that system into the temporary root, and the no-op switch (target: under
# 300 ms), against Nix building the same and setting a profile to it (`nix-env --set`,
# which activates nothing: a lower bound of what a Nix system switch does).
#
#   benches/build-noop.sh [REPEATS]   (default 5; the no-op figure is the median)
#
# When Nix is installed (Debian: apt-get install -y --no-install-recommends nix-bin), the
# same 1,000 derivations and dependencies (`system.nix`, written by gen-system: each a
# /bin/sh builder writing one file) are built and rebuilt by `nix-build` into a chroot
# store with its sandbox on, the same host paths bound and the same number of jobs, and
# the ratios are printed.
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
printf 'nexis first build: %.3f s, %.2f ms per build (wall, %s jobs)\n' "$total" \
    "$(echo "$total * 1000 / $paths" | bc -l)" "$(nproc)"

noop=$(repeat_median "$REPEATS" nexis build --no-link)
printf 'nexis no-op build (median of %s): %.1f ms\n' "$REPEATS" "$(echo "$noop * 1000" | bc -l)"
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f 'nexis no-op peak RSS: %M KiB' "$NEXIS" --root "$WORK/root" --config "$CONFIG" build --no-link >/dev/null
fi

nexis switch >/dev/null 2>&1
switch_noop=$(repeat_median "$REPEATS" nexis switch)
printf 'nexis no-op switch (median of %s): %.1f ms\n' "$REPEATS" "$(echo "$switch_noop * 1000" | bc -l)"
# A second generation (another host name), then switching back and forth between the two.
sed -i 's/^hostname = "bench"$/hostname = "bench-b"/' "$CONFIG"
nexis switch >/dev/null 2>&1
other_generation() { nexis switch --generation $((RUN % 2 + 1)); }
switch_gen=$(repeat_median "$REPEATS" other_generation)
printf 'nexis switch --generation (median of %s): %.1f ms\n' "$REPEATS" "$(echo "$switch_gen * 1000" | bc -l)"

if ! command -v nix-build >/dev/null; then
    echo "nix-build not found: no side-by-side figures"
    exit 0
fi
export NIX_CONFIG=$'build-users-group =\nexperimental-features = nix-command\nsandbox = true\n'"extra-sandbox-paths = /bin /usr /lib /lib64"$'\nsubstituters =\n'"max-jobs = $(nproc)"
nixb() { nix-build --store "$WORK/nixstore" "$WORK/system/system.nix" --no-out-link "$@"; }
start=$(date +%s.%N)
nixb >/dev/null 2>"$WORK/nix.log" || { tail -5 "$WORK/nix.log"; exit 1; }
end=$(date +%s.%N)
nix_total=$(echo "$end - $start" | bc -l)
printf 'Nix first build: %.3f s, %.2f ms per build; Nix/nexis %.1fx\n' "$nix_total" \
    "$(echo "$nix_total * 1000 / $paths" | bc -l)" "$(echo "$nix_total / $total" | bc -l)"
nix_noop=$(repeat_median "$REPEATS" nixb)
printf 'Nix no-op build (median of %s): %.1f ms; Nix/nexis %.1fx\n' "$REPEATS" \
    "$(echo "$nix_noop * 1000" | bc -l)" "$(echo "$nix_noop / $noop" | bc -l)"
# The expression builds every package; the profile is set to the first of them.
nix_build_and_set() {
    nix-env --store "$WORK/nixstore" -p "$WORK/nixprofile" --set "$(nixb 2>/dev/null | head -1)"
}
nix_switch=$(repeat_median "$REPEATS" nix_build_and_set)
printf 'Nix no-op build + nix-env --set (median of %s): %.1f ms; Nix/nexis %.1fx\n' "$REPEATS" \
    "$(echo "$nix_switch * 1000" | bc -l)" "$(echo "$nix_switch / $switch_noop" | bc -l)"
# A second generation of the profile (another path; setting the same path twice makes
# none), then switching back and forth.
nix-env --store "$WORK/nixstore" -p "$WORK/nixprofile" --set "$(nixb 2>/dev/null | sed -n 2p)" >/dev/null 2>&1
nix_other_generation() {
    nix-env --store "$WORK/nixstore" -p "$WORK/nixprofile" --switch-generation $((RUN % 2 + 1))
}
nix_gen=$(repeat_median "$REPEATS" nix_other_generation)
printf 'Nix nix-env --switch-generation (median of %s; a profile link only): %.1f ms; Nix/nexis %.1fx\n' "$REPEATS" \
    "$(echo "$nix_gen * 1000" | bc -l)" "$(echo "$nix_gen / $switch_gen" | bc -l)"
