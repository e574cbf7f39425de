#!/bin/sh
# expect-failure.sh PATTERN CMD [ARGS...]
# Passes when CMD exits non-zero AND its output contains PATTERN: a mutation
# test must fail for the reason it pins, not by crashing some other way.
set -u
pattern=$1
shift
out=$("$@" 2>&1)
rc=$?
if [ "$rc" -eq 0 ]; then
    echo "expected a failure matching '$pattern', but '$*' passed" >&2
    echo "$out" | tail -5 >&2
    exit 1
fi
if ! printf '%s\n' "$out" | grep -qF -- "$pattern"; then
    echo "'$*' failed (exit $rc) without '$pattern':" >&2
    echo "$out" | tail -10 >&2
    exit 1
fi
printf '%s\n' "$out" | grep -F -- "$pattern" | head -2
echo "mutant caught as expected (exit $rc)"
