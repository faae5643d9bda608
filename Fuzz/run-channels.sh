#!/usr/bin/env bash
# Builds and runs the libFuzzer target for the channel frame decoder.
# Usage: Fuzz/run-channels.sh [seconds=600] [extra libFuzzer flags...]
# Only the Sodium-free MeshCore files (Bytes, Random, Time) are needed, so no libsodium link.
# Sources/Channels/Simulated (the test network on SimulatorKit) is left out: the fuzzer needs only the codecs and endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"; shift || true
OUT=.build-fuzz-channels
mkdir -p "$OUT/corpus" "$OUT/artifacts"
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g)
swiftc "${FLAGS[@]}" -module-name MeshCore -emit-module -emit-module-path "$OUT/MeshCore.swiftmodule" \
    -wmo -c Sources/MeshCore/Bytes.swift Sources/MeshCore/Random.swift Sources/MeshCore/Time.swift -o "$OUT/MeshCore.o"
swiftc "${FLAGS[@]}" -module-name ChannelsFuzz -I "$OUT" \
    $(find Sources/Channels -name '*.swift' -not -path '*/Simulated/*' | sort) Fuzz/Channels/FuzzChannelFrame.swift \
    "$OUT/MeshCore.o" -o "$OUT/fuzz-channels"
# Seed corpus: a few valid frames written by the encoder's layout (version 1, ping; data; ack).
printf '\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02' > "$OUT/corpus/ping"
printf '\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x03abc' > "$OUT/corpus/data"
printf '\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x01\x00\x00\x00\x00\x00\x00\x00\x09\x00\x00\x00\x10\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x01\x00\x00\x00\x01\x00\x00\x00\x02' > "$OUT/corpus/ack"
exec "$OUT/fuzz-channels" "$OUT/corpus" Fuzz/Channels/regressions -max_total_time="$SECONDS_TO_RUN" -max_len=4096 \
    -artifact_prefix="$OUT/artifacts/" -print_final_stats=1 "$@"
