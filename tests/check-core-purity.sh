#!/bin/sh
# The Raft core must stay a pure state machine: no I/O, clock, thread or
# external library header. System headers for those are installed anyway, so
# a missing meson dependency would not stop an include; this check does.
set -eu
dir=${1:?usage: check-core-purity.sh CORE_DIR}
bad=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(uv|rocksdb/|fuse|pthread|time|sys/time|sys/socket|sys/stat|netinet/|arpa/|unistd|fcntl|poll|signal|sodium|openssl/)' \
      "$dir"/*.c "$dir"/*.h || true)
if [ -n "$bad" ]; then
    echo "consensus/core must not include I/O, clock or thread headers:" >&2
    echo "$bad" >&2
    exit 1
fi
calls=$(grep -nE '\b(time|clock_gettime|gettimeofday|rand|random|fopen|open|read|write|malloc|free|printf|fprintf)[[:space:]]*\(' \
        "$dir"/*.c | grep -vE '^\S+:[0-9]+:\s*(/\*|\*)' || true)
if [ -n "$calls" ]; then
    echo "consensus/core calls the C library where it must go through the host or rfs_ hooks:" >&2
    echo "$calls" >&2
    exit 1
fi
echo "consensus/core is pure: no I/O, clock, thread or allocator call"
