#!/usr/bin/env bash
# Builds and runs the libFuzzer target for every Lacero decoder (relay/fetch wire, metadata,
# sealed metadata, fragment verification).
#
#   Fuzz/run-lacero.sh [SECONDS] [extra libFuzzer flags...]
#
# Compiles Sodium, MeshCore and Lacero from Sources/ as separate modules with coverage and
# AddressSanitizer (swiftc -sanitize=fuzzer,address), links them with the harness in Fuzz/Lacero
# (and libsodium, ISA-L, libcrypto), and runs it for SECONDS (default 600). The corpus starts
# from the genuine inputs the harness writes as seeds ($OUT/seeds) and Fuzz/corpus/lacero.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
shift || true
OUT="${FUZZ_OUT:-.build-fuzz/lacero}"
mkdir -p "$OUT/corpus" "$OUT/seeds" Fuzz/corpus/lacero
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g -I "$OUT")
for c in CSodium CISAL CLibcrypto; do
    FLAGS+=(-Xcc -fmodule-map-file=Sources/$c/module.modulemap -I Sources/$c)
done

build_module() { # name, source dir
    swiftc "${FLAGS[@]}" -module-name "$1" -emit-module -emit-module-path "$OUT/$1.swiftmodule" \
        -wmo -c "$2"/*.swift -o "$OUT/$1.o"
}
build_module Sodium Sources/Sodium
build_module MeshCore Sources/MeshCore
build_module Lacero Sources/Lacero
swiftc "${FLAGS[@]}" -module-name LaceroFuzz Fuzz/Lacero/LaceroFuzz.swift \
    "$OUT"/Sodium.o "$OUT"/MeshCore.o "$OUT"/Lacero.o -lsodium -lisal -lcrypto -o "$OUT/lacero-fuzz"
LACERO_FUZZ_WRITE_SEEDS="$OUT/seeds" "$OUT/lacero-fuzz" -runs=0 "$OUT/seeds" > /dev/null 2>&1 || true

echo "built $OUT/lacero-fuzz; running for ${SECONDS_TO_RUN}s"
exec "$OUT/lacero-fuzz" "$OUT/corpus" "$OUT/seeds" Fuzz/corpus/lacero -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -print_final_stats=1 "$@"
