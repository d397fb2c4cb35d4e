#!/usr/bin/env bash
# Installs the Debian packages dit needs to build and test (Open MPI included), only those missing. Safe to run repeatedly.
# Usage: scripts/setup.sh [--bench | --fuzz]   (--bench adds Debian's PyTorch, which made the golden
#        files, and the benchmark peer: PyTorch 2.x from PyPI in bench/.venv, with bf16 autocast on oneDNN;
#        --fuzz clang, its libFuzzer/sanitizer runtimes and OpenMP for `make fuzz`;
#        --floor qemu-user, whose emulated CPU without AVX-512 runs scripts/floor_check.sh)
set -euo pipefail
packages=(build-essential pkg-config libopenblas-openmp-dev libcjson-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev liblapack-dev dataset-fashion-mnist
          openmpi-bin libopenmpi-dev)   # the last two: multi-process runs (mpirun -np N dit train|sample|eval)
bench=0
if [[ "${1:-}" == "--bench" ]]; then bench=1; packages+=(python3-torch python3-numpy python3-venv); fi
if [[ "${1:-}" == "--fuzz" ]]; then packages+=(clang libclang-rt-14-dev libomp-dev); fi
if [[ "${1:-}" == "--floor" ]]; then packages+=(qemu-user); fi

# The benchmark peer: the PyTorch a user would pick today (2.x from PyPI), in its own virtual environment.
bench_venv() {
    local root venv
    root="$(cd "$(dirname "$0")/.." && pwd)"
    venv="$root/bench/.venv"
    if "$venv/bin/python" -c "import torch, numpy" 2>/dev/null; then return 0; fi
    echo "setup: installing PyTorch 2.x from PyPI into bench/.venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "torch>=2.1" numpy
}
# dit serve: libmicrohttpd (HTTP); the test suite drives its web page in Debian's headless chromium (~30 s to install).
packages+=(libmicrohttpd-dev chromium)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    if ((bench)); then bench_venv; fi
    exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
if ((bench)); then bench_venv; fi
