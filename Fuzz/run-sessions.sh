#!/usr/bin/env bash
# Builds and runs the libFuzzer target for the session datagram decoder and receive path.
#
#   Fuzz/run-sessions.sh [SECONDS] [extra libFuzzer flags...]
#
# Compiles Sodium, MeshCore, Noise and Sessions from Sources/ as separate modules with coverage
# and AddressSanitizer (swiftc -sanitize=fuzzer,address), links them with the harness in
# Fuzz/Sessions, and runs it for SECONDS (default 600). New inputs go to $OUT/corpus; the seeds
# in Fuzz/corpus/sessions (one genuine-looking packet of each type) are only read.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
shift || true
OUT="${FUZZ_OUT:-.build-fuzz/sessions}"
CORPUS=Fuzz/corpus/sessions
mkdir -p "$OUT/corpus" "$CORPUS"
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g -I "$OUT"
       -Xcc -fmodule-map-file=Sources/CSodium/module.modulemap -I Sources/CSodium)

build_module() { # name, source dir
    swiftc "${FLAGS[@]}" -module-name "$1" -emit-module -emit-module-path "$OUT/$1.swiftmodule" \
        -wmo -c "$2"/*.swift -o "$OUT/$1.o"
}
build_module Sodium Sources/Sodium
build_module MeshCore Sources/MeshCore
build_module Noise Sources/Noise
build_module Sessions Sources/Sessions
swiftc "${FLAGS[@]}" -module-name SessionsFuzz Fuzz/Sessions/SessionsFuzz.swift \
    "$OUT"/Sodium.o "$OUT"/MeshCore.o "$OUT"/Noise.o "$OUT"/Sessions.o -lsodium -o "$OUT/sessions-fuzz"

echo "built $OUT/sessions-fuzz; running for ${SECONDS_TO_RUN}s"
exec "$OUT/sessions-fuzz" "$OUT/corpus" "$CORPUS" -max_total_time="$SECONDS_TO_RUN" -max_len=1300 -print_final_stats=1 "$@"
