#!/usr/bin/env bash
# Side by side: `nexis fetch` (release build) against curl and git on the same inputs,
# all on this machine.
#
#   benches/fetch-vs-curl-git.sh [REPEATS]   (default 3; each figure is the median)
#
# 1. A 1 GiB file over HTTP on 127.0.0.1 (nginx when installed, else `python3 -m
#    http.server`): `nexis fetch http://…/big.bin?hash=sha256-…` downloads it, checks the
#    sha256 as it streams, and adds it to the store of a fresh root (so the figure
#    includes the store add: a blake3 hash, a copy and an fsync); against `curl -o
#    /dev/null`, `curl -o FILE`, `curl | sha256sum`, and `nexis store add` of the same
#    file from disk (the store add alone). Then, unless SKIP_DOWNLOAD_TEST=1, the ignored
#    test `throughput_on_loopback` (nexis-fetch's `Downloader` alone, best of 3, on the
#    test suite's own HTTP server) prints its figures.
# 2. A git repository of 10,000 commits over 1,000 files, made with `git fast-import`:
#    `nexis fetch git+file://REPO` (a fresh root each round: cold git cache, shallow by
#    default, checkout added to the store) and with `?shallow=0` (full history), against
#    `git clone --depth 1 file://REPO` and `git clone file://REPO`.
#
# Needs: cargo, curl, git, python3; nginx optional; GNU time at /usr/bin/time optional
# (peak RSS). Everything is written under one temporary directory on the filesystem of
# $BENCH_DIR (default /var/tmp), removed at exit with the server it started. Inputs are
# read once before they are timed: all figures are warm page cache.
#
# Not part of the test suite; re-runnable; removes what it made.

set -euo pipefail

REPEATS=${1:-3}
ROOT_DIR=$(cd "$(dirname "$0")/.." && pwd)
BASE=${BENCH_DIR:-/var/tmp}
WORK=$(mktemp -d "$BASE/nexis-fetch-bench.XXXXXX")
SERVER_PID=

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    # Store paths are read-only: make directories writable first.
    chmod -R u+w "$WORK" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# say, die, seconds, median, record, med, ratio, drop
. "$ROOT_DIR/benches/lib.sh"

for tool in cargo curl git python3 bc; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
# git isolated from the user's and the system's configuration, as nexis's cache is.
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
TIME=
[ -x /usr/bin/time ] && TIME=/usr/bin/time

say "building nexis (release)"
(cd "$ROOT_DIR" && cargo build --quiet --release -p nexis-cli)
TARGET=${CARGO_TARGET_DIR:-$ROOT_DIR/target}
NEXIS=$TARGET/release/nexis
[ -x "$NEXIS" ] || die "no $NEXIS"

# --- timing helpers ----------------------------------------------------------------

declare -A R
# timed KEY COMMAND...: record the wall time of a program, and with GNU time its peak
# RSS in KiB as RSS[KEY] (the last round's is kept).
declare -A RSS
timed() {
    local key=$1 s e
    shift
    s=$(date +%s.%N)
    if [ -n "$TIME" ]; then
        "$TIME" -f '%M' -o "$WORK/rss" "$@" >/dev/null
        RSS[$key]=$(tail -n1 "$WORK/rss")
    else
        "$@" >/dev/null
    fi
    e=$(date +%s.%N)
    record "$key" "$(echo "$e - $s" | bc -l)"
}

# A new, empty nexis root.
fresh() { mktemp -d "$WORK/root.XXXXXX"; }

# --- 1. HTTP -----------------------------------------------------------------------

DATA=$WORK/www
mkdir -p "$DATA"
BIG=$DATA/big.bin
SIZE=$((1 << 30))
say "generating a 1 GiB file"
# (openssl ends on SIGPIPE when head has enough: not a failure)
{ openssl enc -aes-128-ctr -nosalt -pass pass:nexis -pbkdf2 </dev/zero 2>/dev/null || true; } \
    | head -c "$SIZE" >"$BIG"
[ "$(stat -c %s "$BIG")" -eq "$SIZE" ] || die "could not generate $BIG"
SRI="sha256-$(sha256sum "$BIG" | cut -d' ' -f1 | xxd -r -p | base64 -w0)"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if command -v nginx >/dev/null; then
    SERVER="nginx $(nginx -v 2>&1 | sed 's|.*/||')"
    mkdir -p "$WORK/nginx"
    cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
$([ "$(id -u)" = 0 ] && echo "user root;")
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    server { listen 127.0.0.1:$PORT; root $DATA; }
}
EOF
    nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>/dev/null &
    SERVER_PID=$!
else
    SERVER="python3 -m http.server"
    (cd "$DATA" && exec python3 -m http.server --bind 127.0.0.1 "$PORT" >/dev/null 2>&1) &
    SERVER_PID=$!
fi
URL="http://127.0.0.1:$PORT/big.bin"
for _ in $(seq 100); do
    curl -sf -r 0-0 -o /dev/null "$URL" && break
    sleep 0.1
done
curl -sf -r 0-0 -o /dev/null "$URL" || die "$SERVER did not start on port $PORT"
say "serving $URL with $SERVER"

say "warming the page cache"
cat "$BIG" >/dev/null

BIG_SHA256=$(sha256sum "$BIG" | cut -d' ' -f1)
curl_hash() { [ "$(curl -sf "$URL" | sha256sum | cut -d' ' -f1)" = "$BIG_SHA256" ]; }

for rep in $(seq 1 "$REPEATS"); do
    say "HTTP: round $rep of $REPEATS"
    a=$(fresh)
    sync
    timed http.nexis "$NEXIS" --root "$a" fetch "$URL?hash=$SRI"
    drop "$a"; a=$(fresh); sync
    record http.add "$(seconds "$NEXIS" --root "$a" store add "$BIG")"
    drop "$a"; sync
    record http.null "$(seconds curl -sf -o /dev/null "$URL")"
    sync
    record http.file "$(seconds curl -sf -o "$WORK/curl.out" "$URL")"
    rm -f "$WORK/curl.out"; sync
    record http.sha "$(seconds curl_hash)"
done

# --- 2. git ------------------------------------------------------------------------

REPO=$WORK/repo
say "making a repository of 10,000 commits over 1,000 files (git fast-import)"
git init -q --bare -b main "$REPO"
python3 - <<'EOF' | git -C "$REPO" fast-import --quiet
import random, sys
out = sys.stdout.buffer
rnd = random.Random(10000)
FILES = 1000
def blob(path, version):
    lines = [f"{path} version {version}\n"]
    lines += [f"line {i}: {rnd.getrandbits(64):016x}\n" for i in range(rnd.randint(20, 120))]
    return "".join(lines).encode()
paths = [f"src/mod{i % 25:02}/file{i:04}.txt" for i in range(FILES)]
t = 1_700_000_000
for c in range(10000):
    if c == 0:
        changed = range(FILES)
    else:
        changed = rnd.sample(range(FILES), 3)
    msg = f"commit {c}\n".encode()
    out.write(b"commit refs/heads/main\n")
    out.write(f"committer Bench <bench@example.org> {t + c * 60} +0000\n".encode())
    out.write(b"data %d\n%s" % (len(msg), msg))
    for i in changed:
        data = blob(paths[i], c)
        out.write(f"M 100644 inline {paths[i]}\n".encode())
        out.write(b"data %d\n%s\n" % (len(data), data))
EOF
git -C "$REPO" repack -adq
COMMITS=$(git -C "$REPO" rev-list --count main)
[ "$COMMITS" -eq 10000 ] || die "the repository has $COMMITS commits"
REPO_MB=$(du -sm "$REPO" | cut -f1)
TREE_MB=$(git -C "$REPO" ls-tree -r -l main | awk '{s += $4} END {printf "%.1f", s / 1e6}')
say "repository: $COMMITS commits, $REPO_MB MB packed, checkout $TREE_MB MB"
find "$REPO" -type f -print0 | xargs -0 cat >/dev/null

for rep in $(seq 1 "$REPEATS"); do
    say "git: round $rep of $REPEATS"
    a=$(fresh)
    sync
    timed git.nexis "$NEXIS" --root "$a" fetch "git+file://$REPO"
    drop "$a"; a=$(fresh); sync
    timed git.nexisfull "$NEXIS" --root "$a" fetch "git+file://$REPO?shallow=0"
    drop "$a"; sync
    record git.shallow "$(seconds git clone -q --depth 1 "file://$REPO" "$WORK/clone")"
    rm -rf "$WORK/clone"; sync
    record git.full "$(seconds git clone -q "file://$REPO" "$WORK/clone")"
    rm -rf "$WORK/clone"; sync
done

# --- the table ---------------------------------------------------------------------

mbs() { printf '%.0f' "$(echo "$SIZE / 1000000 / $1" | bc -l)"; }

# row LABEL KEY REFERENCE-KEY [MB/s]: the median, optionally MB/s, and the time over the
# reference's.
row() {
    local t r
    t=$(med "$2"); r=$(med "$3")
    printf '  %-58s %9.3f s %10s %9s\n' "$1" "$t" "${4:+$(mbs "$t") MB/s}" "$(ratio "$t" "$r")"
}

echo
echo "nexis $("$NEXIS" --version | cut -d' ' -f2), $(curl --version | head -n1 | cut -d' ' -f1-2), $(git --version); $(nproc) cores; $(uname -r)"
echo "filesystem: $(df -T "$WORK" | awk 'NR==2 {print $2}'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median of $REPEATS rounds, warm page cache; times are wall clock; the last column is"
echo "the time over the reference's (above 1: slower than the reference)"
echo
printf '%-60s %11s %10s %9s\n' "1 GiB over HTTP on 127.0.0.1 ($SERVER)" "time" "rate" "/ curl -o"
row "nexis fetch (download, sha256, store add)" http.nexis http.file mb
row "nexis store add of the same file from disk" http.add http.file mb
row "curl -o /dev/null" http.null http.file mb
row "curl -o FILE (the reference)" http.file http.file mb
row "curl | sha256sum" http.sha http.file mb
echo
printf '%-60s %11s %10s %9s\n' "git: 10,000 commits, 1,000 files ($REPO_MB MB packed, $TREE_MB MB tree)" "time" "" "/ clone"
row "nexis fetch git+file:// (shallow, cold cache, store add)" git.nexis git.shallow
row "git clone --depth 1 file:// (the reference)" git.shallow git.shallow
row "nexis fetch git+file://...?shallow=0 (full history)" git.nexisfull git.full
row "git clone file:// (full, the reference)" git.full git.full
echo
if [ -n "$TIME" ]; then
    echo "peak RSS of nexis fetch: HTTP $((RSS[http.nexis] / 1024)) MiB, git $((RSS[git.nexis] / 1024)) MiB"
fi

if [ "${SKIP_DOWNLOAD_TEST:-}" != 1 ]; then
    say "nexis-fetch's Downloader alone: the ignored test throughput_on_loopback (release)"
    echo
    echo "nexis-fetch Downloader alone (tests/http.rs throughput_on_loopback: best of 3, the"
    echo "test suite's HTTP server, no store add):"
    (cd "$ROOT_DIR" && NEXIS_BENCH_DIR=$WORK cargo test --quiet --release -p nexis-fetch \
        --test http -- --ignored --nocapture throughput_on_loopback 2>/dev/null) \
        | grep -E 'MB/s' | sed 's/^/  /'
fi
