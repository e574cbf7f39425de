#!/bin/sh
# with-enable-uring.sh Y|N COMMAND...: run COMMAND with the fuse module's
# enable_uring parameter set as asked, and put back what it was however
# COMMAND ends. The parameter is machine-wide, but it only changes what
# the kernel offers in INIT: a mount whose daemon does not accept io_uring
# (every daemon but raftfs with uring=on|auto) never notices. Exit 77
# (skipped) where it cannot be set: not root, or no FUSE over io_uring in
# this kernel (CONFIG_FUSE_IO_URING).
set -u
param=/sys/module/fuse/parameters/enable_uring
want=$1
shift
if ! prev=$(cat "$param" 2>/dev/null) || ! [ -w "$param" ]; then
    echo "cannot set $param: skipping" >&2
    exit 77
fi
restore() { echo "$prev" > "$param"; }
trap restore EXIT
trap 'restore; exit 143' TERM
trap 'restore; exit 130' INT
trap 'restore; exit 129' HUP
echo "$want" > "$param" || exit 77
"$@"
