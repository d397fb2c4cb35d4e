#!/usr/bin/env bash
# Installs the Debian packages dit needs to build and test, only those missing. Safe to run repeatedly.
# Usage: scripts/setup.sh [--bench]   (--bench adds Debian's PyTorch for the reference benchmarks)
set -euo pipefail
packages=(build-essential pkg-config libopenblas-openmp-dev libcjson-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev liblapack-dev dataset-fashion-mnist)
# dit serve: libmicrohttpd (HTTP); the test suite drives its web page in Debian's headless chromium (~30 s to install).
packages+=(libmicrohttpd-dev chromium)
if [[ "${1:-}" == "--bench" ]]; then packages+=(python3-torch python3-numpy); fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then exit 0; fi

echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
