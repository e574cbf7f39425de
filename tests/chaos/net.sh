#!/bin/sh
# net.sh up TAG N | down TAG N | cut TAG N FROM TO | isolate TAG N I |
#        heal TAG N
# The chaos test's network: node i (1..N) in its own namespace TAG-i with
# address 10.91.0.i on a veth pair joined by the bridge TAG-br. Partitions
# are nftables rules in the receiving node's namespace (table inet
# raftfs_chaos): `cut` drops what FROM sends to TO (one way; cut both ways
# for a symmetric partition). Only namespaces, links and tables named after
# TAG are created or removed.
set -eu
op=$1 tag=$2 n=$3
ns() { echo "$tag-$1"; }
nft_in() { ip netns exec "$(ns "$1")" nft "$2"; }
case "$op" in
up)
    ip link add "$tag-br" type bridge
    ip link set "$tag-br" up
    for i in $(seq 1 "$n"); do
        ip netns add "$(ns "$i")"
        ip link add "$tag-v$i" type veth peer name eth0 netns "$(ns "$i")"
        ip link set "$tag-v$i" master "$tag-br" up
        ip -n "$(ns "$i")" addr add "10.91.0.$i/24" dev eth0
        ip -n "$(ns "$i")" link set eth0 up
        ip -n "$(ns "$i")" link set lo up
        nft_in "$i" "add table inet raftfs_chaos"
        nft_in "$i" "add chain inet raftfs_chaos input { type filter hook input priority 0; policy accept; }"
    done
    ;;
down)
    for i in $(seq 1 "$n"); do
        ip netns del "$(ns "$i")" 2>/dev/null || true
        ip link del "$tag-v$i" 2>/dev/null || true
    done
    ip link del "$tag-br" 2>/dev/null || true
    ;;
cut)
    nft_in "$5" "add rule inet raftfs_chaos input ip saddr 10.91.0.$4 drop"
    ;;
heal)
    for i in $(seq 1 "$n"); do
        nft_in "$i" "flush chain inet raftfs_chaos input"
    done
    ;;
*)
    echo "usage: net.sh up|down|cut|heal TAG N ..." >&2
    exit 2
    ;;
esac
