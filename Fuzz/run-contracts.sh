#!/usr/bin/env bash
# Builds and runs the libFuzzer target for contract modules (Fuzz/Contracts): random and mutated
# module bytes through the deploy checks, and every function of a module that passes run twice on
# a pooled instance and once on a fresh one (the verdicts must agree; nothing may trap the host).
#
#   Fuzz/run-contracts.sh [SECONDS] [extra libFuzzer flags...]
#
# WasmKit builds through SwiftPM, so the harness is a package of its own (a static library built
# with -sanitize=fuzzer) linked here with libFuzzer's main. The corpus starts from the example
# contracts in Docs/examples/contracts, compiled to binaries by the harness's seed step.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-600}"
shift || true
# Building WasmKit with the sanitizers takes minutes: the few-second pass of `make test`
# (scripts/fuzz-all.sh --if-supported 3) skips this target; `make fuzz` and a direct run build it.
if [[ "$SECONDS_TO_RUN" -lt 10 && -z "${CONTRACTS_FUZZ:-}" ]]; then
    echo "contracts: skipped for a ${SECONDS_TO_RUN}s pass (its build takes minutes); run Fuzz/run-contracts.sh SECONDS, or set CONTRACTS_FUZZ=1"
    echo "stat::number_of_executed_units: 0"
    exit 0
fi
OUT="${FUZZ_OUT:-.build-fuzz/contracts}"
mkdir -p "$OUT/corpus" Fuzz/corpus/contracts
swift build --package-path Fuzz/Contracts --scratch-path "$OUT/build" -c release -j 2 \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -g --product ContractsFuzz
swiftc "$OUT/build/release/libContractsFuzz.a" -g -sanitize=fuzzer,address -o "$OUT/contracts-fuzz"
for wat in Docs/examples/contracts/*.wat; do
    seed="Fuzz/corpus/contracts/$(basename "$wat" .wat).wasm"
    [[ -f "$seed" ]] || echo "seed missing: $seed (WRITE_FUZZ_SEEDS=1 swift test --filter theFuzzSeedsAreTheCompiledExamples writes it)" >&2
done
echo "built $OUT/contracts-fuzz; running for ${SECONDS_TO_RUN}s"
exec "$OUT/contracts-fuzz" "$OUT/corpus" Fuzz/corpus/contracts -max_total_time="$SECONDS_TO_RUN" -max_len=16384 -print_final_stats=1 "$@"
