# Helpers shared by the side-by-side benchmark scripts (store-vs-nix.sh,
# fetch-vs-curl-git.sh); sourced, not run. Samples go to the caller's `declare -A R`.

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# seconds COMMAND...: run it, print the wall time in seconds.
seconds() {
    local s e
    s=$(date +%s.%N)
    "$@" >/dev/null
    e=$(date +%s.%N)
    echo "$e - $s" | bc -l
}

# repeat_median N COMMAND...: run COMMAND N times (its output dropped; the run number,
# from 1, in $RUN), print the median wall time in seconds.
repeat_median() {
    local n=$1 samples=() s e
    shift
    for RUN in $(seq "$n"); do
        s=$(date +%s.%N)
        "$@" >/dev/null 2>&1 || die "$* failed"
        e=$(date +%s.%N)
        samples+=("$(echo "$e - $s" | bc -l)")
    done
    echo "${samples[*]}" | median
}

# median: the median of the numbers on stdin (separated by spaces or newlines).
median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# record KEY SECONDS: append one sample to R[KEY]; med KEY: their median.
record() { R[$1]="${R[$1]:-} $2"; }
med() { echo "${R[$1]:-}" | median; }

# ratio A B: A / B as `1.23x`, or `-` when either is missing.
ratio() { [ -n "$1" ] && [ -n "$2" ] && printf '%.2fx' "$(echo "$1 / $2" | bc -l)" || printf '%s' '-'; }

# drop DIR: remove a store or root a run made (store paths are read-only).
drop() { chmod -R u+w "$1" 2>/dev/null || true; rm -rf "$1"; }
