#!/usr/bin/env bash
# Builds and runs the libFuzzer target for the gossip message decoder and the gossip core's
# receive path.
#
#   Fuzz/run-gossip.sh [SECONDS] [extra libFuzzer flags...]
#
# Compiles Sodium, MeshCore and Gossip from Sources/ as separate modules with coverage and
# AddressSanitizer (swiftc -sanitize=fuzzer,address), links them with the harness in Fuzz/Gossip,
# and runs it for SECONDS (default 600). New inputs go to $OUT/corpus; the seeds in
# Fuzz/corpus/gossip (one genuine message of each type) are only read.
set -euo pipefail
cd "$(dirname "$0")/.."
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

echo "built $OUT/gossip-fuzz; running for ${SECONDS_TO_RUN}s"
exec "$OUT/gossip-fuzz" "$OUT/corpus" "$CORPUS" -max_total_time="$SECONDS_TO_RUN" -max_len=9000 -print_final_stats=1 "$@"
