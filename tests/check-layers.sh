#!/bin/sh
# The lower layers stay below: common/ includes nothing from another raftfs
# folder, and store/ nothing but common/. The store keeps the Raft log and
# configurations as records and bytes, so a change that made it read the
# consensus's types again would quietly tie the two back together; relative
# includes get past meson's dependency lists, so this check stops them.
set -eu
src=${1:?usage: check-layers.sh SOURCE_ROOT}
inc='#[[:space:]]*include[[:space:]]*"'
bad=$(grep -nE "$inc"'\.\./' "$src"/common/*.c "$src"/common/*.h || true)
bad2=$(grep -nE "$inc" "$src"/store/*.c "$src"/store/*.h |
       grep -vE "$inc"'(\.\./common/[a-z0-9_]+\.h|store(_i)?\.h)"' || true)
if [ -n "$bad$bad2" ]; then
    echo "a lower layer includes a higher one (common/ < store/ < the rest):" >&2
    printf '%s\n%s\n' "$bad" "$bad2" | sed '/^$/d' >&2
    exit 1
fi
echo "layers hold: common/ stands alone, store/ uses only common/"
