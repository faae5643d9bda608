# iotaf: the two commands the README gives.
#   make run   installs what is missing, builds in release mode, starts a local 5-node mesh on ::1
#              (stops on Ctrl-C, or after DURATION seconds: make run DURATION=30)
#   make test  runs the whole test suite
SHELL := /bin/bash
NODES ?= 5
DURATION ?=
JOBS ?= 2

.PHONY: run test deps build build-debug bench sim clean

deps:
	@bash scripts/install-deps.sh

# Release builds link the Swift runtime and Foundation statically: the binary then needs only
# Debian's libuv1, libsodium23 and libsqlite3-0 on the box (`ldd .build/release/iotaf` shows them).
build: deps
	swift build -c release -j $(JOBS) --static-swift-stdlib

build-debug: deps
	swift build -j $(JOBS)

run: build
	.build/release/iotaf mesh --nodes $(NODES) $(if $(DURATION),--duration $(DURATION))

test: deps
	swift build --build-tests -j $(JOBS)
	swift test --skip-build --parallel --num-workers $(JOBS)

bench: build
	.build/release/iotaf bench loop
	.build/release/iotaf bench noise
	.build/release/iotaf bench channel

sim: build
	.build/release/iotaf sim run Simulations/mesh-100.toml --seed 1 --report out/mesh-100.json --plots out/plots

clean:
	rm -rf .build out
