#!/bin/sh
# run-fuzz.sh SOURCE_ROOT BUILD_DIR SECONDS
#
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for
# its share of a bounded time over a copy of its seed corpus (the
# checked-in corpora are never modified): the wire decoder (frames and Raft
# messages from peers) half, the gossip and image-fetch decoders and the
# verifier (what an observer takes from any peer) a quarter, and
# dissemination (runs of such messages into an observer and a voter) a
# quarter. Any crash, leak, overread or timeout fails the test; libFuzzer
# prints the reproducer's path.
set -eu
src=$(cd "$1" && pwd)
mkdir -p "$2/fuzz"
out=$(cd "$2/fuzz" && pwd)
secs=${3:-30}
if ! command -v clang >/dev/null 2>&1; then
    echo "clang is missing: run mount-tools/setup" >&2
    exit 1
fi
cflags="-std=gnu17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE"
common="$src/common/crc32c.c $src/common/heap.c $src/common/err.c $src/common/assert.c"
# shellcheck disable=SC2086
clang $cflags -o "$out/fuzz_wire" "$src/tests/fuzz/fuzz_wire.c" \
    "$src/consensus/wire.c" "$src"/consensus/core/*.c $common -lpthread
# shellcheck disable=SC2086
clang $cflags -o "$out/fuzz_gossip" "$src/tests/fuzz/fuzz_gossip.c" \
    "$src/consensus/gossip.c" "$src/consensus/gimage.c" "$src/store/chain.c" $common -lsodium -lpthread
# shellcheck disable=SC2086
clang $cflags -o "$out/fuzz_spread" "$src/tests/fuzz/fuzz_spread.c" \
    "$src/consensus/spread.c" "$src/consensus/gossip.c" "$src/store/chain.c" \
    $common -lsodium -lpthread
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rc=0
fuzz() { # fuzz NAME SECONDS
    mkdir -p "$work/$1"
    cp "$src/tests/fuzz/corpus-$1"/* "$work/$1/"
    echo "fuzzing $1 for ${2}s (corpus: $(ls "$work/$1" | wc -l) seeds)"
    r=0
    (cd "$out" && ./"fuzz_$1" -max_total_time="$2" -timeout=5 -rss_limit_mb=1024 \
        -max_len=65536 -print_final_stats=1 "$work/$1" >"$out/fuzz-$1.log" 2>&1) || r=$?
    # Show the outcome, not libFuzzer's progress chatter.
    grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Test unit written|.*runtime error)" \
        "$out/fuzz-$1.log" || true
    if [ "$r" -ne 0 ]; then
        echo "fuzzer $1 failed (exit $r); full log: $out/fuzz-$1.log" >&2
        tail -40 "$out/fuzz-$1.log" >&2
        rc=$r
    fi
}
gsecs=$((secs / 4 > 0 ? secs / 4 : 1))
fuzz wire $((secs - 2 * gsecs > 0 ? secs - 2 * gsecs : 1))
fuzz gossip "$gsecs"
fuzz spread "$gsecs"
exit "$rc"
