#!/usr/bin/env bash
# Runs every libFuzzer target in Fuzz/ (each Fuzz/run-NAME.sh) for SECONDS each and prints one
# summary line per target. A crash is written into the directory that target's runner already
# reads as seeds (Fuzz/corpus/NAME, or Fuzz/Channels/regressions), so it is replayed on every later
# run until fixed: commit it as a regression input. Exits non-zero when any target finds one.
#
#   scripts/fuzz-all.sh [--if-supported] [SECONDS]   (make fuzz FUZZ_SECONDS=N; make test: 3 s)
#
# Needs a toolchain whose swiftc takes -sanitize=fuzzer (the Linux swift.org toolchains do; Apple's
# Xcode toolchains do not). With --if-supported (what `make test` passes) a toolchain without it
# is reported and skipped instead of failing.
set -uo pipefail
cd "$(dirname "$0")/.."
IF_SUPPORTED=0
if [[ "${1:-}" == "--if-supported" ]]; then IF_SUPPORTED=1; shift; fi
SECONDS_EACH="${1:-60}"
LOGS=.build-fuzz/logs
mkdir -p "$LOGS"
probe="$LOGS/probe"
printf '@_cdecl("LLVMFuzzerTestOneInput") public func f(_ d: UnsafePointer<UInt8>, _ n: Int) -> CInt { 0 }\n' > "$probe.swift"
if ! swiftc -sanitize=fuzzer -parse-as-library "$probe.swift" -o "$probe" > "$probe.log" 2>&1; then
    echo "fuzz: this swiftc does not take -sanitize=fuzzer ($probe.log); the fuzz targets cannot be built here" >&2
    exit $((IF_SUPPORTED ? 0 : 1))
fi
regressions_dir() { # target name → where its runner reads seeds from
    case "$1" in
        channels) echo Fuzz/Channels/regressions ;;
        *) echo "Fuzz/corpus/$1" ;;
    esac
}
FAILED=0
printf '%-10s %14s %8s %s\n' target executions seconds result
for runner in Fuzz/run-*.sh; do
    name=$(basename "$runner" .sh); name=${name#run-}
    dir=$(regressions_dir "$name"); mkdir -p "$dir"
    before=$(find "$dir" -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' | wc -l)
    bash "$runner" "$SECONDS_EACH" -artifact_prefix="$dir/" > "$LOGS/$name.txt" 2>&1
    rc=$?
    after=$(find "$dir" -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$LOGS/$name.txt" | grep -o '[0-9]*$' || echo "?")
    if [[ $rc == 0 ]]; then
        result=ok
    elif grep -q 'error:' "$LOGS/$name.txt" && [[ $execs == "?" ]]; then
        result="build failed (log $LOGS/$name.txt)"; FAILED=1
    else
        result="FOUND: rc=$rc, $((after - before)) new input(s) in $dir (log $LOGS/$name.txt)"; FAILED=1
    fi
    printf '%-10s %14s %8s %s\n' "$name" "$execs" "$SECONDS_EACH" "$result"
done
exit $FAILED
