#!/usr/bin/env bash
# Installs what the binding needs on a fresh Debian machine, then builds it:
# libnbd's headers (libnbd-dev), the test servers (nbdkit, qemu-nbd), libnbd's
# Python binding (the reference the tests compare against), GnuTLS's certtool
# (gnutls-bin: the TLS tests make their X.509 certificates), a C++ toolchain,
# for `npm run bench` nbdcopy (libnbd-bin) and valgrind (--instructions),
# jq and hexdump (bsdextrautils), which libnbd's own tests of its tools use
# (scripts/libnbd-tool-tests.sh),
# then `npm ci` without install scripts and the builds they would skip: the
# addon compiled from these sources (the install script, node-gyp-build, would
# keep an existing build/ or load a prebuilt binary) and the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(libnbd-dev libnbd-bin nbdkit qemu-utils python3-libnbd gnutls-bin pkg-config g++ make cmake iproute2 procps util-linux valgrind jq bsdextrautils)
# --print-packages: the list alone (scripts/debian13.sh keys its cached root by it).
if [ "${1:-}" = --print-packages ]; then echo "${packages[*]}"; exit 0; fi
sudo=""
if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
export DEBIAN_FRONTEND=noninteractive
# apt only when something is missing (a cached Debian 13 root has them all).
if ! dpkg-query -W -f='${Status}\n' "${packages[@]}" 2>/dev/null | grep -qv '^install ok installed$' &&
   [ "$(dpkg-query -W -f='${Status}\n' "${packages[@]}" 2>/dev/null | wc -l)" = "${#packages[@]}" ]; then
  echo "setup: system packages already installed"
else
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${packages[@]}" >/dev/null
fi
npm ci --ignore-scripts
npx node-gyp rebuild -j max
npx tsc -p tsconfig.json
