#!/usr/bin/env bash
# Installs the Debian packages dit needs to build and test (Open MPI included), only those missing. Safe to run repeatedly.
# Usage: scripts/setup.sh [--bench]   (--bench adds Debian's PyTorch for the reference benchmarks)
set -euo pipefail
packages=(build-essential pkg-config libopenblas-openmp-dev libcjson-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev liblapack-dev dataset-fashion-mnist
          openmpi-bin libopenmpi-dev)   # the last two: multi-process runs (mpirun -np N dit train|sample|eval)
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
