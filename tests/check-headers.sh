#!/bin/sh
# Every header compiles on its own (one header per module, self-contained).
set -eu
cc=${CC:-cc}
src=${1:?usage: check-headers.sh SOURCE_ROOT}
n=0
for h in "$src"/common/*.h "$src"/consensus/*.h "$src"/consensus/core/*.h \
         "$src"/store/*.h "$src"/fs/*.h "$src"/mount-tools/*.h \
         "$src"/tests/lib/*.h; do
    [ -f "$h" ] || continue
    printf '#include "%s"\n' "$h" | $cc -std=gnu17 -Wall -Wextra -Werror \
        $(pkg-config --cflags fuse3) \
        -fsyntax-only -x c - || { echo "header does not compile alone: $h" >&2; exit 1; }
    n=$((n + 1))
done
echo "$n headers compile on their own"
