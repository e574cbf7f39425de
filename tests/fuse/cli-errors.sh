#!/bin/sh
# cli-errors.sh RAFTFS DIR RUNNING_DATADIR: every bad input to the raftfs
# command fails (exit status not 0) with a message that names the problem.
set -u
r=$1 dir=$2 live=$3
t=$(mktemp -d "$dir/cli.XXXXXX")
fails=0 n=0
expect() { # expect PATTERN COMMAND...: fails, and stderr matches PATTERN
    pat=$1
    shift
    n=$((n + 1))
    if out=$("$@" 2>&1); then
        echo "not ok $n - succeeded: $*"
        fails=$((fails + 1))
    elif printf '%s' "$out" | grep -q -- "$pat"; then
        echo "ok $n - $(printf '%s' "$out" | head -1)"
    else
        echo "not ok $n - '$*' said: $out (wanted /$pat/)"
        fails=$((fails + 1))
    fi
}
mkdir -p "$t/m"
expect "unknown command" "$r" bogus
expect "unknown option" "$r" init "$t/a" --id 1 --listen 127.0.0.1:7000 --bogus
expect "not an IPv4 address" "$r" init "$t/a" --id 1 --listen 300.1.1.1:7000
expect "port must be" "$r" init "$t/a" --id 1 --listen 127.0.0.1:99999
expect "bad node id" "$r" init "$t/a" --id 0 --listen 127.0.0.1:7000
expect "must include this node" "$r" init "$t/a" --id 1 \
    --listen 127.0.0.1:7000 --peers 2=127.0.0.1:7002
expect "repeats an id" "$r" init "$t/a" --id 1 --listen 127.0.0.1:7000 \
    --peers 1=127.0.0.1:7000,1=127.0.0.1:7001
expect "exactly 32 bytes" "$r" init "$t/a" --id 1 --listen 127.0.0.1:7000 \
    --secret /etc/hostname
expect "already a raftfs data folder" "$r" init "$live" --id 1 \
    --listen 127.0.0.1:7000
expect "data folder" "$r" mount "$t/nonexistent" "$t/m"
expect "not a raftfs data folder\|raftfs init" "$r" mount "$t" "$t/m"
expect "mount point" "$r" mount "$live" "$t/nonexistent"
expect "unknown mount option" "$r" mount "$live" "$t/m" -o bogus=1
expect "reads=linearizable or reads=local" "$r" mount "$live" "$t/m" \
    -o reads=bogus
expect "whole seconds" "$r" mount "$live" "$t/m" -o commit_timeout=0
expect "lease=on or lease=off" "$r" mount "$live" "$t/m" -o lease=maybe
expect "dircache=on or dircache=off" "$r" mount "$live" "$t/m" \
    -o dircache=maybe
expect "threads=0: expected a count of FUSE threads from 1 to 64" "$r" \
    mount "$live" "$t/m" -o threads=0
expect "threads=65: expected a count" "$r" mount "$live" "$t/m" -o threads=65
expect "threads=4x: expected a count" "$r" mount "$live" "$t/m" -o threads=4x
expect "session_ttl=abc: expected seconds from 2" "$r" mount "$live" "$t/m" \
    -o session_ttl=abc
expect "session_ttl=1: expected seconds from 2" "$r" mount "$live" "$t/m" \
    -o session_ttl=1
expect "session_ttl=: expected seconds" "$r" mount "$live" "$t/m" \
    -o session_ttl=
expect "expected one or more directories" "$r" ephemeral
expect "not in a raftfs mount" "$r" ephemeral "$t"
expect "not a directory" "$r" ephemeral /etc/hostname
busy=$(grep " $dir/n1 fuse" /proc/mounts | cut -d' ' -f2)
expect "busy" "$r" mount "$live" "$busy"
expect "in use by another raftfs process" "$r" mount "$live" "$t/m"
expect "not a raftfs data folder" "$r" status -d "$t/nonexistent"
"$r" init "$t/b" --id 5 --listen 127.0.0.1:7999 >/dev/null
expect "not running" "$r" status -d "$t/b"
expect "bad node id" "$r" members -d "$live" add 0 127.0.0.1:7000
expect "bad address" "$r" members -d "$live" add 7 1.2.3
expect "not a member" "$r" members -d "$live" remove 42
expect "expected list, add" "$r" members -d "$live" frobnicate
expect "excludes --peers and --restore" "$r" init "$t/a" --id 1 \
    --listen 127.0.0.1:7000 --observer --peers 1=127.0.0.1:7000
expect "bad address" "$r" members -d "$live" add --observer 7 1.2.3
expect "no promote command" "$r" members -d "$live" promote 7
expect "role does not change to or from observer" "$r" members -d "$live" \
    add --observer 1 127.0.0.1:7000
grep -q " $t/m " /proc/mounts && { echo "not ok: left a mount"; fails=$((fails + 1)); }
rm -rf "$t"
echo "# $n checks, $fails failed"
[ "$fails" -eq 0 ]
