#!/usr/bin/env bash
# Builds and runs the libFuzzer target for every meter decoder (read, proof, "iM" messages,
# operator command).
#
#   Fuzz/run-meters.sh [SECONDS] [extra libFuzzer flags...]
#
# Compiles Sodium, MeshCore and Meters from Sources/ as separate modules with coverage and
# AddressSanitizer (swiftc -sanitize=fuzzer,address), links them with the harness in Fuzz/Meters
# (and libsodium), and runs it for SECONDS (default 600). The corpus starts from the genuine
# inputs the harness writes as seeds ($OUT/seeds) and Fuzz/corpus/meters.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
shift || true
OUT="${FUZZ_OUT:-.build-fuzz/meters}"
mkdir -p "$OUT/corpus" "$OUT/seeds" Fuzz/corpus/meters
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g -I "$OUT"
       -Xcc -fmodule-map-file=Sources/CSodium/module.modulemap -I Sources/CSodium)

build_module() { # name, source dir
    swiftc "${FLAGS[@]}" -module-name "$1" -emit-module -emit-module-path "$OUT/$1.swiftmodule" \
        -wmo -c "$2"/*.swift -o "$OUT/$1.o"
}
build_module Sodium Sources/Sodium
build_module MeshCore Sources/MeshCore
build_module Meters Sources/Meters
swiftc "${FLAGS[@]}" -module-name MetersFuzz Fuzz/Meters/MetersFuzz.swift \
    "$OUT"/Sodium.o "$OUT"/MeshCore.o "$OUT"/Meters.o -lsodium -o "$OUT/meters-fuzz"
METERS_FUZZ_WRITE_SEEDS="$OUT/seeds" "$OUT/meters-fuzz" -runs=0 "$OUT/seeds" > /dev/null 2>&1 || true

echo "built $OUT/meters-fuzz; running for ${SECONDS_TO_RUN}s"
exec "$OUT/meters-fuzz" "$OUT/corpus" "$OUT/seeds" Fuzz/corpus/meters -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -print_final_stats=1 "$@"
