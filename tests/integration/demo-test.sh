#!/bin/sh
# Runs the README's main command as a new user would, non-interactively:
# start (three mounts), write through one mount and read through the others,
# kill the leader with -9, write again, stop; then checks that no process
# and no mount it started is left. Also runs `raftfs-demo run` and stops it
# through its Ctrl-C handler.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
demo="$top/mount-tools/raftfs-demo"
dir=$(mktemp -d /tmp/raftfs-demo-test-XXXXXX)
# Ports of our own, so a demo someone left running does not collide.
RAFTFS_DEMO_PORT=$((20000 + $$ % 20000))
export RAFTFS_DEMO_PORT
trap '"$demo" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
"$demo" start "$dir"
echo hi > "$dir/n1/x"
[ "$(cat "$dir/n2/x")" = hi ]
[ "$(cat "$dir/n3/x")" = hi ]
mkdir "$dir/n3/lock"
if mkdir "$dir/n1/lock" 2>/dev/null; then
    echo "demo-test: a second mkdir of the lock succeeded" >&2
    exit 1
fi
leader=$(cut -d' ' -f1 "$dir/n1/.raftfs/leader")
pids=$(cat "$dir"/d*/raftfs.pid)
kill -9 "$(cat "$dir/d$leader/raftfs.pid")"
other=1
[ "$leader" = 1 ] && other=2
echo again > "$dir/n$other/y"
[ "$(cat "$dir/n$other/y")" = again ]
"$demo" stop "$dir"
check_clean() {
    for p in $pids; do
        state=$(ps -o stat= -p "$p" 2>/dev/null || true)
        if [ -n "$state" ] && [ "${state#Z}" = "$state" ]; then
            echo "demo-test: process $p still running after stop" >&2
            exit 1
        fi
    done
    if grep -q " $dir/n" /proc/mounts; then
        echo "demo-test: a mount is left after stop" >&2
        exit 1
    fi
}
check_clean
# The interactive form: Ctrl-C stops everything. The data persists.
"$demo" run "$dir" > "$dir/run.out" 2>&1 &
runner=$!
for _ in $(seq 1 100); do
    grep -q "Ctrl-C here" "$dir/run.out" 2>/dev/null && break
    sleep 0.1
done
[ "$(cat "$dir/n2/y")" = again ]
pids=$(cat "$dir"/d*/raftfs.pid)
# SIGTERM, not SIGINT: a background job of a script starts with SIGINT
# ignored, and a shell cannot trap a signal ignored on entry. The demo's
# handler is the same for both.
kill -TERM "$runner"
wait "$runner" || true
check_clean
echo "demo-test: start, mounts, lock, leader kill, stop, run + Ctrl-C: ok"
