#!/usr/bin/env bash
# Side by side: the same store work through `nexis` (release build) and Nix 2.8, with
# `cp`, `rm -rf` and `b3sum` on the same data as the physical reference.
#
#   benches/store-vs-nix.sh [REPEATS]        (default 3; each figure is the median)
#
# Needs: cargo, nix-bin (Debian: apt-get install -y --no-install-recommends nix-bin),
# b3sum (apt-get install b3sum, or `cargo install b3sum --root /tmp/b3`; skipped with a
# message when missing), GNU time at /usr/bin/time. Nix uses a local store in a temporary
# directory (`--store DIR`): no daemon, no sandbox. Everything is written under one
# temporary directory on the filesystem of $BENCH_DIR (default /var/tmp), removed at exit.
#
# Caches: dropping the page cache is not reliably possible here, so every input is read
# once before it is timed (warm cache) and every figure is a warm-cache figure. Writes go
# through the page cache as well; `nexis` syncs the filesystem before it makes a path
# valid (crash safety), `cp`, `nix` and `rm` do not, so "cp -a + sync" is shown too.
#
# Not part of the test suite; re-runnable; removes what it made.

set -euo pipefail

REPEATS=${1:-3}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BASE=${BENCH_DIR:-/var/tmp}
WORK=$(mktemp -d "$BASE/nexis-vs-nix.XXXXXX")
export NIX_CONFIG=$'build-users-group =\nexperimental-features = nix-command\nwarn-dirty = false'

cleanup() {
    # Store paths are read-only: make directories writable first.
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# say, die, seconds, median, record, med, ratio, drop
. "$ROOT_DIR/benches/lib.sh"

command -v nix-store >/dev/null || die "nix-store not found: apt-get install -y --no-install-recommends nix-bin"
[ -x /usr/bin/time ] || die "/usr/bin/time not found: apt-get install time"
B3SUM=$(command -v b3sum || true)
[ -z "$B3SUM" ] && [ -x /tmp/b3/bin/b3sum ] && B3SUM=/tmp/b3/bin/b3sum
if [ -z "$B3SUM" ] && command -v cargo >/dev/null; then
    say "b3sum not found; trying: cargo install b3sum --root /tmp/b3"
    cargo install --quiet b3sum --root /tmp/b3 && B3SUM=/tmp/b3/bin/b3sum || B3SUM=
fi
[ -z "$B3SUM" ] && say "b3sum unavailable: its column is left empty"

say "building nexis (release)"
(cd "$ROOT_DIR" && cargo build --quiet --release -p nexis-cli)
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
NEXIS=$TARGET/release/nexis
[ -x "$NEXIS" ] || die "no $NEXIS"

# --- data --------------------------------------------------------------------------

DATA=$WORK/data
mkdir -p "$DATA"
# The tree: /usr/share/doc when it is a good size, else a generated one of the size the
# issue names (5,500 files, about 127 MB), always the same.
TREE=/usr/share/doc
tree_files=$(find "$TREE" -type f 2>/dev/null | wc -l)
tree_bytes=$(du -sb "$TREE" 2>/dev/null | cut -f1)
if [ "$tree_files" -lt 4000 ] || [ "$tree_bytes" -lt 80000000 ]; then
    say "generating a tree (/usr/share/doc has only $tree_files files, $tree_bytes bytes)"
    TREE=$DATA/doc
    python3 - "$TREE" <<'EOF'
import os, random, sys
root = sys.argv[1]
rnd = random.Random(5500)
for i in range(5500):
    d = os.path.join(root, f"pkg{i % 400:03}", ("examples" if i % 5 == 0 else ""))
    os.makedirs(d, exist_ok=True)
    size = int(rnd.lognormvariate(8.5, 1.6)) % (4 << 20)
    with open(os.path.join(d, f"file{i}"), "wb") as f:
        f.write(rnd.randbytes(size))
EOF
    tree_files=$(find "$TREE" -type f | wc -l)
    tree_bytes=$(du -sb "$TREE" | cut -f1)
fi
TREE_ENTRIES=$(find "$TREE" | wc -l)
say "tree: $TREE, $tree_files files ($TREE_ENTRIES entries), $((tree_bytes / 1000000)) MB"

BIG=$DATA/big
say "generating a 1 GiB file"
# (openssl ends on SIGPIPE when head has enough: not a failure)
{ openssl enc -aes-128-ctr -nosalt -pass pass:nexis -pbkdf2 </dev/zero 2>/dev/null || true; } \
    | head -c $((1 << 30)) >"$BIG"
[ "$(stat -c %s "$BIG")" -eq $((1 << 30)) ] || die "could not generate $BIG"

SMALL=$DATA/small
LIVE=$DATA/live
mkdir -p "$SMALL" "$LIVE"
say "generating 10,000 + 40,000 small files"
python3 - "$SMALL" "$LIVE" <<'EOF'
import sys
small, live = sys.argv[1], sys.argv[2]
for i in range(1, 10001):
    with open(f"{small}/f{i}", "w") as f:
        f.write(f"small file {i}\n")
for i in range(1, 40001):
    with open(f"{live}/l{i}", "w") as f:
        f.write(f"live file {i}\n")
EOF
sync

say "warming the page cache (every input read once; all figures are warm-cache)"
find "$TREE" "$DATA" -type f -print0 | xargs -0 cat >/dev/null

# --- timing helpers ----------------------------------------------------------------

# Creating many files right after deleting many is slow on some filesystems (ext4 skips
# recently freed inodes); deletions are followed by a sync and a pause before the next
# timed step, the same for every tool.
settle() { sync; sleep "${SETTLE:-5}"; }

# A new, empty directory for one store (nexis root or nix store).
fresh() { mktemp -d "$WORK/store.XXXXXX"; }
nexis() { "$NEXIS" "$@"; }
nixs() { nix-store "$@"; }

declare -A R

rss_nexis=
rss_nix=

# --- the runs ----------------------------------------------------------------------

# The two sides of each step, as functions of the current stores $a (nexis root) and $b
# (nix store).
tree_nexis() { nexis --root "$a" store add "$TREE"; }
tree_nix() { nix store add-path --store "$b" "$TREE"; }
big_nexis() { nexis --root "$a" store add "$BIG"; }
big_nix() { nix store add-path --store "$b" "$BIG"; }
hash_nexis() { nexis store hash-path "$TREE"; }
hash_nix() { nix-hash --type sha256 --base32 "$TREE"; }
small_nexis() { (cd "$SMALL" && "$NEXIS" --root "$a" store add f*); }
small_nix() { (cd "$SMALL" && nix-store --store "$b" --add f*); }
gc_nexis() { nexis --root "$a" gc; }
gc_nix() { nixs --store "$b" --gc; }
verify_nexis() { nexis --root "$a" store verify --all; }
verify_nix() { nixs --store "$b" --verify --check-contents; }

# both KEY: time KEY_nexis and KEY_nix (recorded as KEY.nexis and KEY.nix); nexis goes
# first in odd rounds and nix in even ones, so that neither always inherits the state
# (page cache, freed inodes) the other leaves. Each starts with nothing dirty in the page
# cache: `nexis` syncs the filesystem, which would otherwise flush the other's writes.
both() {
    if ((rep % 2)); then
        sync; record "$1.nexis" "$(seconds "$1_nexis")"
        sync; record "$1.nix" "$(seconds "$1_nix")"
    else
        sync; record "$1.nix" "$(seconds "$1_nix")"
        sync; record "$1.nexis" "$(seconds "$1_nexis")"
    fi
}

for rep in $(seq 1 "$REPEATS"); do
    say "round $rep of $REPEATS"

    # Add the tree.
    a=$(fresh); b=$(fresh)
    both tree
    sync
    record tree.cp "$(seconds cp -a "$TREE" "$WORK/cp")"
    drop "$WORK/cp"; sync
    record tree.cpsync "$(seconds sh -c "cp -a '$TREE' '$WORK/cp' && sync")"
    [ -n "$B3SUM" ] && record tree.b3 "$(seconds sh -c "find '$TREE' -type f -print0 | xargs -0 '$B3SUM' --no-names")"
    drop "$a"; drop "$b"; drop "$WORK/cp"; settle

    # Add the 1 GiB file (and, in the last round, peak memory).
    a=$(fresh); b=$(fresh)
    if [ "$rep" = "$REPEATS" ]; then
        sync
        /usr/bin/time -f '%e %M' -o "$WORK/t.nexis" "$NEXIS" --root "$a" store add "$BIG" >/dev/null
        sync
        /usr/bin/time -f '%e %M' -o "$WORK/t.nix" nix store add-path --store "$b" "$BIG" >/dev/null 2>&1
        record big.nexis "$(cut -d' ' -f1 "$WORK/t.nexis")"
        record big.nix "$(cut -d' ' -f1 "$WORK/t.nix")"
        rss_nexis=$(cut -d' ' -f2 "$WORK/t.nexis")
        rss_nix=$(cut -d' ' -f2 "$WORK/t.nix")
    else
        both big
    fi
    sync
    record big.cp "$(seconds cp "$BIG" "$WORK/big.cp")"
    rm -f "$WORK/big.cp"; sync
    record big.cpsync "$(seconds sh -c "cp '$BIG' '$WORK/big.cp' && sync")"
    [ -n "$B3SUM" ] && record big.b3 "$(seconds "$B3SUM" "$BIG")"
    rm -f "$WORK/big.cp"; drop "$a"; drop "$b"; settle

    # Hash the tree without adding it.
    both hash
    [ -n "$B3SUM" ] && record hash.b3 "$(seconds sh -c "find '$TREE' -type f -print0 | xargs -0 '$B3SUM' --no-names")"

    # 10,000 small files as 10,000 paths, one invocation; then collect them, nothing live.
    a=$(fresh); b=$(fresh)
    both small
    sync
    record small.cp "$(seconds cp -a "$SMALL" "$WORK/small.cp")"
    sync; sleep 1
    both gc
    R[gc0.nexis]="${R[gc0.nexis]:-} ${R[gc.nexis]##* }"
    R[gc0.nix]="${R[gc0.nix]:-} ${R[gc.nix]##* }"
    record gc0.rm "$(seconds rm -rf "$WORK/small.cp")"
    drop "$a"; drop "$b"; settle

    # Collect 10,000 dead paths with 40,000 live ones (rooted by symlinks in gcroots).
    a=$(fresh); b=$(fresh)
    (cd "$LIVE" && "$NEXIS" --root "$a" store add l*) >"$WORK/live.nexis"
    (cd "$LIVE" && nix-store --store "$b" --add l*) >"$WORK/live.nix"
    mkdir -p "$a/nexis/var/nexis/gcroots" "$b/nix/var/nix/gcroots"
    xargs ln -s -t "$a/nexis/var/nexis/gcroots" <"$WORK/live.nexis"
    xargs ln -s -t "$b/nix/var/nix/gcroots" <"$WORK/live.nix"
    small_nexis >/dev/null
    small_nix >/dev/null
    sync; sleep 1
    both gc
    R[gc40.nexis]="${R[gc40.nexis]:-} ${R[gc.nexis]##* }"
    R[gc40.nix]="${R[gc40.nix]:-} ${R[gc.nix]##* }"
    [ "$(ls "$a/nexis/store" | wc -l)" -eq 40000 ] || die "nexis gc did not keep the 40,000 live paths"
    [ "$(ls "$b/nix/store" | wc -l)" -eq 40000 ] || die "nix gc did not keep the 40,000 live paths"
    drop "$a"; drop "$b"; settle

    # Verify everything: the tree, the 1 GiB file and 10,000 small paths.
    a=$(fresh); b=$(fresh)
    nexis --root "$a" store add "$TREE" "$BIG" >/dev/null
    nix store add-path --store "$b" "$TREE" >/dev/null
    nix store add-path --store "$b" "$BIG" >/dev/null 2>&1
    small_nexis >/dev/null
    small_nix >/dev/null
    both verify

    # Copying a closure that is all there already (one 1 GiB path): to a binary cache
    # that has it (the second of two copies), and from that cache into a store where it
    # is valid. Uncompressed on both sides (Nix would use xz: minutes for 1 GiB). Only
    # if this nexis has `store copy`.
    if "$NEXIS" store copy --help >/dev/null 2>&1; then
        bigpath=$(nexis --root "$a" store add "$BIG")
        nexis --root "$a" store copy --compression none --to "file://$WORK/cache.nexis" "$bigpath" >/dev/null
        record noopto.nexis "$(seconds nexis --root "$a" store copy --compression none --to "file://$WORK/cache.nexis" "$bigpath")"
        record noopfrom.nexis "$(seconds nexis --root "$a" store copy --no-require-sigs --from "file://$WORK/cache.nexis" "$bigpath")"
        nbig=$(nix store add-path --store "$b" "$BIG" 2>/dev/null)
        nix copy --from "$b" --to "file://$WORK/cache.nix?compression=none" "$nbig" >/dev/null 2>&1
        record noopto.nix "$(seconds nix copy --from "$b" --to "file://$WORK/cache.nix?compression=none" "$nbig")"
        record noopfrom.nix "$(seconds nix copy --no-check-sigs --from "file://$WORK/cache.nix?compression=none" --to "$b" "$nbig")"
        rm -rf "$WORK/cache.nexis" "$WORK/cache.nix"
    fi
    drop "$a"; drop "$b"; settle
done

# --- the table ---------------------------------------------------------------------

fmt() { [ -n "$1" ] && printf '%.3f s' "$1" || printf '%s' '-'; }

row() { # name key reference-key reference-label
    local n x r b
    n=$(med "$2.nexis"); x=$(med "$2.nix"); r=$(med "$2.$3"); b=$(med "$2.b3")
    printf '%-44s %10s %10s %12s %10s %9s %9s %9s\n' "$1" "$(fmt "$n")" "$(fmt "$x")" \
        "$(fmt "$r")" "$(fmt "$b")" "$(ratio "$x" "$n")" "$(ratio "$n" "$r")" "$4"
}

echo
echo "nexis $("$NEXIS" --version | cut -d' ' -f2) vs $(nix --version); $(nproc) cores; $(uname -r)"
echo "filesystem: $(df -T "$WORK" | awk 'NR==2 {print $2}') ($(findmnt -no OPTIONS -T "$WORK" | cut -c1-60)); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median of $REPEATS rounds, warm page cache; times are wall clock"
echo "tree: $TREE, $tree_files files, $TREE_ENTRIES entries, $((tree_bytes / 1000000)) MB"
echo
printf '%-44s %10s %10s %12s %10s %9s %9s %9s\n' "work" "nexis" "nix 2.8" "reference" "b3sum" "nix/nexis" "nexis/ref" "ref is"
row "add tree" tree cp "cp -a"
printf '%-44s %10s %10s %12s %10s %9s %9s %9s\n' "  (reference with sync)" "" "" "$(fmt "$(med tree.cpsync)")" "" "" "$(ratio "$(med tree.nexis)" "$(med tree.cpsync)")" "cp -a+sync"
row "add 1 GiB file" big cp "cp"
printf '%-44s %10s %10s %12s %10s %9s %9s %9s\n' "  (reference with sync)" "" "" "$(fmt "$(med big.cpsync)")" "" "" "$(ratio "$(med big.nexis)" "$(med big.cpsync)")" "cp+sync"
row "hash tree (nexis hash-path, nix-hash)" hash b3 "b3sum"
row "add 10,000 small files as 10,000 paths" small cp "cp -a"
row "gc 10,000 dead, 0 live" gc0 rm "rm -rf"
row "gc 10,000 dead, 40,000 live" gc40 rm "-"
row "verify all (tree + 1 GiB + 10,000 paths)" verify none "-"
if [ -n "${R[noopto.nexis]:-}" ]; then
    row "copy 1 GiB path to a cache that has it" noopto none "-"
    row "copy 1 GiB path from a cache, valid already" noopfrom none "-"
fi
echo
echo "peak RSS adding the 1 GiB file: nexis $((rss_nexis / 1024)) MiB, nix $((rss_nix / 1024)) MiB"
echo "nix/nexis > 1 means nexis is faster; nexis/ref is nexis's time over the physical reference's"
