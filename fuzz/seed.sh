#!/bin/sh
# Seed the fuzz corpora from the language test cases (the corpus is not committed).
#
#   eval:    each tests/cases/*.toml bundle as it is;
#   version: versions, requirements and references taken from the same files.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cases="$here/../nexis-config/tests/cases"
mkdir -p "$here/corpus/eval" "$here/corpus/version"
cp "$cases"/*.toml "$here/corpus/eval/"
[ -d "$here/../nexis-config/tests/fixtures/fuzzed" ] &&
    find "$here/../nexis-config/tests/fixtures/fuzzed" -type f -exec cp {} "$here/corpus/eval/" \;
i=0
for spec in \
    '2.12.1\n2.10\n2.9\n>=2.9, <2.12\ncore#hello@>=2' \
    '2.0~rc1\n2.0\n2.0~rc2\n^2\nopenssl@~3.1' \
    '9.6p1\n9.6\n1.02\n~1.4.2\nself#a.b+c-d' \
    '1.0.0\n1.0\n1\n=1.0\nx@*' \
    '0.3.5\n0.4\n0.3\n^0.3\ncore#zlib@<1.3, >=1.2'; do
    i=$((i + 1))
    printf "$spec" > "$here/corpus/version/seed-$i"
done
# cache_info: the replayed fixtures (each parser error, and infos that parse).
mkdir -p "$here/corpus/cache_info"
cp "$here/../nexis-store/tests/fixtures/fuzzed-info"/[0-9a-f]* "$here/corpus/cache_info/"
# input_ref: the replayed fixtures (references that parse, and errors).
mkdir -p "$here/corpus/input_ref"
cp "$here/../nexis-fetch/tests/fixtures/fuzzed-ref"/* "$here/corpus/input_ref/"
# lock: the replayed fixtures (hand-written locks of every type, and errors).
mkdir -p "$here/corpus/lock"
find "$here/../nexis-fetch/tests/fixtures/fuzzed-lock" -type f ! -name '*.md' \
    -exec cp {} "$here/corpus/lock/" \;
echo "seeded $(ls "$here/corpus/eval" | wc -l) eval and $i version inputs"
