#!/usr/bin/env bash
# Install the Debian packages libTMC needs, only those missing. Idempotent and quiet when
# everything is present. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  cmake ninja-build g++ clang pkg-config
  libuv1-dev libsodium-dev libssl-dev libboost-dev libyaml-cpp-dev doctest-dev libcli11-dev libbenchmark-dev
  pybind11-dev python3-dev python3-pytest
  iproute2 nftables libzmq3-dev socat python3-matplotlib
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "libTMC: installing missing packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "libTMC: not root and no sudo; please install: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
