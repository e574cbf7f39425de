#!/bin/sh
# uring-fallback.sh RAFTFS: with the fuse module's enable_uring at N (run
# under with-enable-uring.sh N), uring=on and uring=auto mounts work over
# /dev/fuse, say so in one log line (a warning for on, info for auto, the
# default) and in /.raftfs/transport; uring=off says nothing; a bad value
# is refused.
set -u
exe=$1
fails=0
step=0
check() { # check DESCRIPTION EXPECTED ACTUAL
    step=$((step + 1))
    if [ "$2" = "$3" ]; then
        echo "ok $step - $1"
    else
        echo "not ok $step - $1"
        echo "#   expected: $2"
        echo "#   actual:   $3"
        fails=$((fails + 1))
    fi
}
dir=$(mktemp -d /tmp/raftfs-uring.XXXXXX)
pid=
cleanup() {
    fusermount3 -u "$dir/m" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid"
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP
port=$((20000 + $$ % 20000))
mkdir "$dir/m"
"$exe" init "$dir/d" --id 1 --listen "127.0.0.1:$port" \
    --peers "1=127.0.0.1:$port" >/dev/null || exit 1

mount_with() { # mount_with OPTS: mount in the foreground, log in $dir/log
    "$exe" mount "$dir/d" "$dir/m" -f -o "$1" > "$dir/log" 2>&1 &
    pid=$!
    i=0
    while ! [ -e "$dir/m/.raftfs/status" ] && [ $i -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}
unmount() {
    fusermount3 -u "$dir/m"
    wait "$pid"
    pid=
}

mount_with uring=on
echo hello > "$dir/m/f"
check "uring=on, enable_uring=N: the mount works" hello "$(cat "$dir/m/f")"
check "/.raftfs/transport names /dev/fuse and why" \
    "dev_fuse (the fuse module's enable_uring is N) requests_over_io_uring=0" \
    "$(head -n1 "$dir/m/.raftfs/transport")"
unmount
check "uring=on: one warning in the log" \
    "WARN: FUSE over io_uring: the fuse module's enable_uring is N; requests go through /dev/fuse reads" \
    "$(grep 'io_uring' "$dir/log" | sed 's/.*node 1 //')"

mount_with uring=auto
check "uring=auto: the mount works" hello "$(cat "$dir/m/f")"
unmount
check "uring=auto: one info line" \
    "INFO: FUSE over io_uring: the fuse module's enable_uring is N; requests go through /dev/fuse reads" \
    "$(grep 'io_uring' "$dir/log" | sed 's/.*node 1 //')"

mount_with reads=linearizable
check "no uring= option: the mount works" hello "$(cat "$dir/m/f")"
unmount
check "no uring= option is uring=auto: one info line" \
    "INFO: FUSE over io_uring: the fuse module's enable_uring is N; requests go through /dev/fuse reads" \
    "$(grep 'io_uring' "$dir/log" | sed 's/.*node 1 //')"

mount_with uring=off
check "uring=off: the mount works" hello "$(cat "$dir/m/f")"
check "uring=off: /.raftfs/transport" \
    "dev_fuse (uring=off) requests_over_io_uring=0" \
    "$(head -n1 "$dir/m/.raftfs/transport")"
unmount
check "uring=off: nothing in the log" "" "$(grep 'io_uring' "$dir/log")"

out=$("$exe" mount "$dir/d" "$dir/m" -f -o uring=yes 2>&1)
check "uring=yes is refused" \
    "raftfs: mount option uring=yes: expected uring=on, uring=off or uring=auto" \
    "$out"

echo "1..$step"
[ $fails -eq 0 ]
