#!/usr/bin/env bash
# Installs what iotaf needs to build and test on Debian, and nothing that is already there.
# Uses sudo only when not root. Safe to run again.
set -euo pipefail

need=()
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in libuv1-dev libsodium-dev libsqlite3-dev pkg-config iproute2; do
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
