# iotaf: the two commands the README gives.
#   make run   installs what is missing, builds in release mode, starts a local 5-node mesh on ::1
#              (stops on Ctrl-C, or after DURATION seconds: make run DURATION=30)
#   make test  runs the whole test suite
SHELL := /bin/bash
NODES ?= 5
DURATION ?=
JOBS ?= 2
VERSION ?= 0.1.0

.PHONY: run test deps build build-debug bench sim clean fuzz soak floods testbed-clean deb lacero-trials ledger-kill-loop meter-chain
FLOOD_SECONDS ?= 30
FUZZ_SECONDS ?= 60
SOAK_HOSTS ?= 30
SOAK_MINUTES ?= 30
SOAK_SEED ?= 1
LACERO_TRIALS ?= 20
LEDGER_KILLS ?= 100
METER_CHAIN_RUNS ?= 3

deps:
	@bash scripts/install-deps.sh

# Release builds link the Swift runtime and Foundation statically: the binary then needs only
# Debian's libuv1, libsodium23, libsqlite3-0, libisal2 and libssl3 on the box (`ldd .build/release/iotaf` shows them).
build: deps
	swift build -c release -j $(JOBS) --static-swift-stdlib

build-debug: deps
	swift build -j $(JOBS)

run: build
	.build/release/iotaf mesh --nodes $(NODES) $(if $(DURATION),--duration $(DURATION))

#   make test also runs every libFuzzer target for 3 s (scripts/fuzz-all.sh) so that a decoder
#   that crashes on a committed regression input, or within seconds, fails CI.
test: deps
	swift build --build-tests -j $(JOBS)
	swift test --skip-build --parallel --num-workers $(JOBS)
	bash scripts/fuzz-all.sh --if-supported 3

# Every libFuzzer target in Fuzz/ for FUZZ_SECONDS each (make fuzz FUZZ_SECONDS=5: a quick pass).
fuzz:
	bash scripts/fuzz-all.sh $(FUZZ_SECONDS)

# The real-network test bed at SOAK_HOSTS hosts for SOAK_MINUTES with a random nemesis drawn
# from SOAK_SEED; ends with a summary of faults injected and checks passed (Docs/testbed.md).
# Needs root.
soak: deps
	swift build --build-tests -j $(JOBS)
	IOTAF_SOAK=1 SOAK_HOSTS=$(SOAK_HOSTS) SOAK_MINUTES=$(SOAK_MINUTES) SOAK_SEED=$(SOAK_SEED) \
		swift test --skip-build --filter TestbedSoakTests

# Floods from an attacker namespace (garbage, oversized, wrong network key, replayed handshakes and
# transport packets) for FLOOD_SECONDS each against a member of a 4-host bed (Docs/testbed.md). Root.
floods: deps
	swift build --build-tests -j $(JOBS)
	IOTAF_FLOODS=1 IOTAF_FLOOD_SECONDS=$(FLOOD_SECONDS) swift test --skip-build --filter TestbedFloodTests

# Lacero between real processes at the issue's size: 20 nodes on ::1, a 64 MiB object, k = 10,
# n = 14; each of LACERO_TRIALS rounds kills n - k holders with SIGKILL and gets identical bytes
# (scripts/lacero-trials.py on the release binary; the suite's LaceroProcessTests runs one round
# at 14 nodes and 3 MiB, IOTAF_LACERO_BIG=1 the issue's size in the test). Prints how many passed.
lacero-trials: build
	python3 scripts/lacero-trials.py --bin .build/release/iotaf --trials $(LACERO_TRIALS)

# The ledger's kill loop: 4 validators and 2 replicas as processes on ::1 under load; LEDGER_KILLS
# times a random one is killed with SIGKILL, its data directory verified offline as the kill left
# it, and restarted; then no acknowledged transaction is lost, every node holds the same block at
# the common height and verifies (the suite runs 3 kills). LEDGER_KILL_SEED=N repeats a sequence.
ledger-kill-loop: deps
	swift build --build-tests -j $(JOBS)
	LEDGER_KILL_LOOP=$(LEDGER_KILLS) $(if $(LEDGER_KILL_SEED),LEDGER_KILL_SEED=$(LEDGER_KILL_SEED)) \
		swift test --skip-build --filter LedgerServiceProcessTests.killLoop

# Meter reads along a real chain of namespaces (collector - relay - relay - relay, 10 % loss on
# every link, the middle relay SIGKILLed for a minute): every read at the collector exactly once,
# all anchored (MeterChainNetnsTests, about 3 minutes a run). Runs it METER_CHAIN_RUNS times and
# prints how many passed. Root.
meter-chain: deps
	swift build --build-tests -j $(JOBS)
	@passed=0; for i in $$(seq 1 $(METER_CHAIN_RUNS)); do \
		if IOTAF_METER_CHAIN=1 swift test --skip-build --filter MeterChainNetnsTests; then passed=$$((passed + 1)); fi; \
	done; echo "meter-chain: $$passed of $(METER_CHAIN_RUNS) runs passed"; test $$passed -eq $(METER_CHAIN_RUNS)

# Removes namespaces and files that an interrupted test-bed run left behind.
testbed-clean:
	bash scripts/testbed-clean.sh

# A Debian package of the release binary: out/iotaf_$(VERSION)_ARCH.deb (scripts/make-deb.sh;
# Docs/operations.md, "Installing with the package").
deb: build
	bash scripts/make-deb.sh $(VERSION) out

bench: build
	.build/release/iotaf bench loop
	.build/release/iotaf bench noise
	.build/release/iotaf bench channel
	.build/release/iotaf bench lacero

sim: build
	.build/release/iotaf sim run Simulations/mesh-100.toml --seed 1 --report out/mesh-100.json --plots out/plots

clean:
	rm -rf .build .build-fuzz .build-fuzz-channels out
