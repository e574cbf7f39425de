#!/bin/sh
# mutants.sh BUILD_DIR SEEDS [ESCAPES]
# Each planted mutant (a core or host driver built with one known bug, see
# MUTANT() in consensus/core/*.c and consensus/host.c) must be caught by
# the simulator alone, within SEEDS seeds. Prints the seed that caught each
# one and its violation, then one line:
#   mutants: N planted, M caught by the simulator
# ESCAPES lists mutants not caught yet (space-separated numbers): they are
# reported but do not fail the run. Any other escape fails it.
set -u
dir=$1
seeds=$2
escapes=${3:-}
names="1:figure8-commit-by-count 2:act-before-durable 3:read-before-noop-commit
4:follower-commit-uncapped 5:no-election-restriction 6:conf-change-errata
7:aba-persist-completion 8:lease-without-end 9:no-boot-hold
10:host-clock-only-on-timer 11:stickiness-ends-with-higher-term
12:follower-lease-without-end"
planted=0
caught=0
bad=0
for kn in $names; do
    k=${kn%%:*}
    name=${kn#*:}
    planted=$((planted + 1))
    exe="$dir/raftfs-sim-mutant$k"
    out=$("$exe" --seeds "$seeds" --stop-at-first 2>&1)
    line=$(printf '%s\n' "$out" | grep -m1 ' FAILED: ')
    if [ -n "$line" ]; then
        caught=$((caught + 1))
        echo "mutant $k ($name): caught by $line"
    else
        case " $escapes " in
        *" $k "*) echo "mutant $k ($name): NOT caught in $seeds seeds (known escape)" ;;
        *) echo "mutant $k ($name): NOT caught in $seeds seeds"; bad=1 ;;
        esac
    fi
done
echo "mutants: $planted planted, $caught caught by the simulator"
exit $bad
