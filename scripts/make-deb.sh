#!/usr/bin/env bash
# Builds iotaf_VERSION_ARCH.deb from the release binary (`make deb`): no network needed.
#   scripts/make-deb.sh VERSION [OUTDIR]        (IOTAF_BIN=PATH: package that binary instead of .build/release/iotaf)
# The binary links the Swift runtime and Foundation statically; its other shared libraries are
# declared as dependencies, each by the Debian package that holds it here (ldd, then dpkg -S), at
# least the version installed on the building machine.
set -euo pipefail
version=${1:?usage: make-deb.sh VERSION [OUTDIR]}
out=${2:-out}
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${IOTAF_BIN:-$root/.build/release/iotaf}"
[ -x "$bin" ] || { echo "make-deb: $bin is missing; run make build first" >&2; exit 1; }
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"  # the package's ./ entry: mktemp made it 0700

install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/iotaf" "$stage/usr/share/doc/iotaf"
install -m 0755 "$bin" "$stage/usr/bin/iotaf"
strip --strip-unneeded "$stage/usr/bin/iotaf"
install -m 0644 "$root/Configs/iotaf.service" "$stage/lib/systemd/system/iotaf.service"
sed -e 's#/etc/iotaf/iot-box.toml#/etc/iotaf/iotaf.toml#' "$root/Configs/iot-box.toml" > "$stage/etc/iotaf/iotaf.toml"
chmod 0640 "$stage/etc/iotaf/iotaf.toml"
install -m 0644 "$root/README.md" "$stage/usr/share/doc/iotaf/README.md"
install -m 0644 "$root/Configs/grafana-iotaf.json" "$stage/usr/share/doc/iotaf/grafana-iotaf.json"
for s in postinst prerm postrm; do install -m 0755 "$root/packaging/deb/$s" "$stage/DEBIAN/$s"; done
echo /etc/iotaf/iotaf.toml > "$stage/DEBIAN/conffiles"

# Dependencies: the package of every shared library the binary loads, >= the version built against.
deps=()
while read -r lib; do
    path=$(readlink -f "$lib")
    pkg=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) || true
    if [ -z "$pkg" ]; then pkg=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1) || true; fi
    [ -n "$pkg" ] || { echo "make-deb: no Debian package holds $lib; cannot declare it" >&2; exit 1; }
    v=$(dpkg-query -W -f='${Version}' "$pkg" | sed -e 's/-[^-]*$//')
    deps+=("$pkg (>= $v)")
done < <(ldd "$stage/usr/bin/iotaf" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /ld-linux/ { print $1 }' | sort -u)
# adduser for the system user, util-linux for setpriv (postinst makes the key as that user).
deps+=("adduser" "util-linux")
depends=$(printf '%s\n' "${deps[@]}" | sort -u | paste -sd, | sed 's/,/, /g')
size=$(du -sk "$stage" | cut -f1)

cat > "$stage/DEBIAN/control" <<CONTROL
Package: iotaf
Version: $version
Architecture: $arch
Maintainer: iotaf developers <iotaf@localhost>
Installed-Size: $size
Depends: $depends
Section: net
Priority: optional
Homepage: https://example.invalid/iotaf
Description: peer-to-peer IoT mesh node
 iotaf is a symmetric peer-to-peer mesh node: gossip membership over UDP/IPv6,
 Noise-encrypted sessions, reliable channels, BFT consensus. This package runs
 it as a hardened systemd service (iotaf.service) as the system user iotaf,
 with its config in /etc/iotaf/iotaf.toml and its state in /var/lib/iotaf.
CONTROL

mkdir -p "$out"
deb="$out/iotaf_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
