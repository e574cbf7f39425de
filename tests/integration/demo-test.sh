#!/bin/sh
# Runs the README's main command as a new user would, non-interactively:
# start, write through one node, read through another, kill the leader,
# write again, stop; then checks that no process it started is left.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
demo="$top/mount-tools/raftfs-demo"
dir=$(mktemp -d /tmp/raftfs-demo-test-XXXXXX)
# Ports of our own, so a demo someone left running does not collide.
RAFTFS_DEMO_PORT=$((20000 + $$ % 20000))
export RAFTFS_DEMO_PORT
trap '"$demo" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$demo" start "$dir"
"$demo" put "$dir" 1 k1 v1 | grep -q '^done [0-9]* 0 '
[ "$("$demo" get "$dir" 3 k1)" = v1 ]
leader=$("$demo" status "$dir" | sed -n 's/.*role=leader.* leader=\([0-9]*\).*/\1/p' | head -1)
[ -n "$leader" ]
kill -9 "$(cat "$dir/n$leader.pid")"
other=1
[ "$leader" = 1 ] && other=2
sleep 1
"$demo" put "$dir" "$other" k2 v2 | grep -q '^done [0-9]* 0 '
[ "$("$demo" get "$dir" "$other" k2)" = v2 ]
pids=$(cat "$dir"/n*.pid "$dir"/n*.hold 2>/dev/null || true)
"$demo" stop "$dir"
sleep 0.5
for p in $pids; do
    # A zombie has ended; only its parent's reaping is missing.
    state=$(ps -o stat= -p "$p" 2>/dev/null || true)
    if [ -n "$state" ] && [ "${state#Z}" = "$state" ]; then
        echo "demo-test: process $p still running after stop" >&2
        exit 1
    fi
done
echo "demo-test: start, put, get, leader kill, stop: ok"
