#!/usr/bin/env bash
# Installs what iotaf needs to build and test on Debian, and nothing that is already there.
# Uses sudo only when not root. Safe to run again.
set -euo pipefail

need=()
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in libuv1-dev libsodium-dev libsqlite3-dev libisal-dev libssl-dev pkg-config iproute2 nftables; do
    pkg_ok "$p" || need+=("$p")
done

if ((${#need[@]})); then
    echo "iotaf: installing missing Debian packages: ${need[*]}" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "iotaf: need root or sudo to install ${need[*]}" >&2; exit 1; }
        SUDO="sudo"
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! command -v swift >/dev/null; then
    echo "iotaf: the Swift toolchain (6.x) is not on PATH; install it from swift.org and try again" >&2
    exit 1
fi

# --- Noise interop test (Tests/NoiseTests/InteropTests.swift) ---
# The test runs handshakes against an independent implementation, the Python package
# noiseprotocol from PyPI; install it only when python3 cannot import it yet (noise.connection,
# not just noise, which an unrelated PyPI package also provides).
if command -v python3 >/dev/null; then
    if ! python3 -c 'import noise.connection' >/dev/null 2>&1; then
        echo "iotaf: installing the Python package noiseprotocol (for the Noise interop test)" >&2
        python3 -m pip install --quiet noiseprotocol
    fi
else
    echo "iotaf: python3 not found; the Noise interop test needs python3 with noiseprotocol" >&2
fi

# --- zfec interop test (Tests/LaceroTests/ZfecInteropTests.swift) ---
# Lacero's Reed-Solomon must be byte-compatible with zfec (Tahoe-LAFS's coder); the test runs the
# Python package zfec from PyPI and skips, saying so, when it is absent.
if command -v python3 >/dev/null; then
    if ! python3 -c 'import zfec' >/dev/null 2>&1; then
        echo "iotaf: installing the Python package zfec (for the Lacero zfec interop test)" >&2
        python3 -m pip install --quiet zfec
    fi
fi
