#!/usr/bin/env bash
# Builds and runs the libFuzzer target for the gossip message decoder and the gossip core's
# receive path.
#
#   Fuzz/run-gossip.sh [SECONDS] [extra libFuzzer flags...]
#   Fuzz/run-gossip.sh --each [SECONDS_PER_DECODER]
#
# --each runs one target per message decoder (GOSSIP_FUZZ_DECODER, see the harness), each with
# its own corpus in $OUT/corpus-NAME, and prints executions and findings per decoder.
#
# Compiles Sodium, MeshCore and Gossip from Sources/ as separate modules with coverage and
# AddressSanitizer (swiftc -sanitize=fuzzer,address), links them with the harness in Fuzz/Gossip,
# and runs it for SECONDS (default 600). New inputs go to $OUT/corpus; the seeds in
# Fuzz/corpus/gossip (one genuine message of each type) are only read.
set -euo pipefail
cd "$(dirname "$0")/.."
EACH=0
if [[ "${1:-}" == "--each" ]]; then EACH=1; shift; fi
SECONDS_TO_RUN="${1:-600}"
shift || true
OUT="${FUZZ_OUT:-.build-fuzz/gossip}"
CORPUS=Fuzz/corpus/gossip
mkdir -p "$OUT/corpus" "$CORPUS"
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g -I "$OUT"
       -Xcc -fmodule-map-file=Sources/CSodium/module.modulemap -I Sources/CSodium)

build_module() { # name, source dir
    swiftc "${FLAGS[@]}" -module-name "$1" -emit-module -emit-module-path "$OUT/$1.swiftmodule" \
        -wmo -c "$2"/*.swift -o "$OUT/$1.o"
}
build_module Sodium Sources/Sodium
build_module MeshCore Sources/MeshCore
build_module Gossip Sources/Gossip
swiftc "${FLAGS[@]}" -module-name GossipFuzz Fuzz/Gossip/GossipFuzz.swift \
    "$OUT"/Sodium.o "$OUT"/MeshCore.o "$OUT"/Gossip.o -lsodium -o "$OUT/gossip-fuzz"

if [[ $EACH == 1 ]]; then
    DECODERS=(ping ack pingRequest nack gossip join joinReply forwardJoin neighbor neighborReply
              disconnect shuffle shuffleReply query queryAnswer digest digestReply attributesRequest
              delta attributes beacon privateBeacon)
    SUMMARY="$OUT/each-summary.txt"
    printf '%-18s %12s %8s %s\n' decoder executions seconds findings | tee "$SUMMARY"
    FOUND=0
    for d in "${DECODERS[@]}"; do
        mkdir -p "$OUT/corpus-$d" "$OUT/findings-$d"
        echo "fuzzing decoder $d for ${SECONDS_TO_RUN}s" >&2
        set +e
        GOSSIP_FUZZ_DECODER=$d "$OUT/gossip-fuzz" "$OUT/corpus-$d" -max_total_time="$SECONDS_TO_RUN" \
            -max_len=9000 -print_final_stats=1 -artifact_prefix="$OUT/findings-$d/" "$@" > "$OUT/log-$d.txt" 2>&1
        rc=$?
        set -e
        execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/log-$d.txt" | grep -o '[0-9]*$' || echo "?")
        secs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$OUT/log-$d.txt" | grep -o '[0-9]*$' || echo "?")
        n=$(find "$OUT/findings-$d" -type f | wc -l)
        [[ $rc != 0 || $n != 0 ]] && FOUND=1
        printf '%-18s %12s %8s %s\n' "$d" "$execs" "$SECONDS_TO_RUN" "$([[ $rc == 0 && $n == 0 ]] && echo none || echo "rc=$rc, $n files in $OUT/findings-$d (log $OUT/log-$d.txt)")" | tee -a "$SUMMARY"
    done
    echo "summary: $SUMMARY"
    exit $FOUND
fi

echo "built $OUT/gossip-fuzz; running for ${SECONDS_TO_RUN}s"
exec "$OUT/gossip-fuzz" "$OUT/corpus" "$CORPUS" -max_total_time="$SECONDS_TO_RUN" -max_len=9000 -print_final_stats=1 "$@"
