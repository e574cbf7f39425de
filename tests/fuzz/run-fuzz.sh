#!/bin/sh
# run-fuzz.sh SOURCE_ROOT BUILD_DIR SECONDS
#
# Builds the wire decoder's libFuzzer target with clang (ASan + UBSan) and
# runs it for a bounded time over a copy of the seed corpus (the checked-in
# corpus is never modified). Any crash, leak, overread or timeout fails the
# test; libFuzzer prints the reproducer's path.
set -eu
src=$(cd "$1" && pwd)
mkdir -p "$2/fuzz"
out=$(cd "$2/fuzz" && pwd)
secs=${3:-30}
if ! command -v clang >/dev/null 2>&1; then
    echo "clang is missing: run mount-tools/setup" >&2
    exit 1
fi
clang -std=gnu17 -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -D_GNU_SOURCE \
    -o "$out/fuzz_wire" \
    "$src/tests/fuzz/fuzz_wire.c" "$src/consensus/wire.c" \
    "$src"/consensus/core/*.c "$src/common/crc32c.c" \
    "$src/common/heap.c" "$src/common/err.c" "$src/common/assert.c" \
    -lpthread
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src"/tests/fuzz/corpus-wire/* "$work/"
echo "fuzzing the wire decoder for ${secs}s (corpus: $(ls "$work" | wc -l) seeds)"
cd "$out"
rc=0
./fuzz_wire -max_total_time="$secs" -timeout=5 -rss_limit_mb=1024 \
    -max_len=65536 -print_final_stats=1 "$work" >"$out/fuzz.log" 2>&1 || rc=$?
# Show the outcome, not libFuzzer's progress chatter.
grep -E "^(Done|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Test unit written|.*runtime error)" \
    "$out/fuzz.log" || true
if [ "$rc" -ne 0 ]; then
    echo "fuzzer failed (exit $rc); full log: $out/fuzz.log" >&2
    tail -40 "$out/fuzz.log" >&2
fi
exit "$rc"
