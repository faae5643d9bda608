#!/usr/bin/env bash
# Removes what an interrupted test-bed run left behind (Docs/testbed.md): for every marker in
# /run/iotaf-testbed whose test process is gone, kills the processes in its namespaces and
# deletes the namespaces (their links go with them) and its /tmp/iotaf-tb-PREFIX directory.
# The bed does the same when it starts; this is for a machine that will not run it again soon.
set -euo pipefail
MARKERS=/run/iotaf-testbed
[[ -d $MARKERS ]] || exit 0
for marker in "$MARKERS"/*; do
    [[ -e $marker ]] || continue
    prefix=$(basename "$marker")
    pid=$(cat "$marker" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then echo "bed $prefix: its test (pid $pid) still runs; left alone"; continue; fi
    for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix" || true); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$ns" && echo "removed namespace $ns"
    done
    rm -rf "/tmp/iotaf-tb-$prefix"
    rm -f "$marker"
done
