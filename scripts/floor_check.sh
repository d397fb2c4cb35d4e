#!/usr/bin/env bash
# The x86-64-v3 floor: dit must run on a CPU with AVX2 and FMA but no AVX-512, choosing its kernels by CPUID.
# The AVX-512, AVX512-BF16 and AMX kernels sit in files compiled for those instruction sets, where the compiler
# may use them anywhere (even for a memset), so a helper from such a file called on the fp32 path dies with
# SIGILL on an AVX2-only CPU while every test passes on an AMX machine. This check catches that there too:
# on a CPU with AVX-512 it runs part of the suite and a few commands under qemu-x86_64 -cpu max, QEMU's
# emulated CPU, which has AVX2 but no AVX-512 (QEMU's TCG does not implement it); on a CPU without AVX-512,
# `make test` already ran everything at the floor and there is nothing to emulate.
# Usage: scripts/floor_check.sh [BUILD_DIR]   (after make; installs qemu-user with scripts/setup.sh --floor
#        when it has to emulate)
#        FLOOR_EMULATE=1 runs the emulated check on a CPU without AVX-512 too (to try the check itself)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
if ! grep -qw avx512f /proc/cpuinfo && [[ "${FLOOR_EMULATE:-0}" != 1 ]]; then
    echo "floor: this CPU has no AVX-512; make test ran every command at the x86-64-v3 floor already"
    exit 0
fi
bash scripts/setup.sh --floor   # qemu-user, only where it is needed
emu=(qemu-x86_64 -cpu max)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# QEMU's CPU must really lack AVX-512, or the check proves nothing.
"${emu[@]}" "$build/dit" info --hw >"$out/hw" 2>/dev/null || { echo "floor: dit info --hw failed under qemu" >&2; exit 1; }
grep -q '^kernel path: *avx2' "$out/hw" || { echo "floor: qemu's CPU is not an AVX2-only CPU:" >&2; cat "$out/hw" >&2; exit 1; }
echo "floor: qemu-x86_64 -cpu max: AVX2 and FMA, no AVX-512 (dit info --hw: kernel path avx2)"
# Units that walk the model, its ops and the autoencoder on the default (auto = fp32 here) path, and the CLI
# (~2 minutes emulated; the sampling and training units take over 10 minutes under qemu).
for unit in ops blocks dit vae; do
    OMP_WAIT_POLICY=PASSIVE DIT_BIN="${emu[*]} $build/dit" "${emu[@]}" "$build/test_dit" "$unit" | tail -1 | tee "$out/unit"
    grep -q ' 0 failed' "$out/unit" || { echo "floor: unit $unit failed" >&2; exit 1; }
done
# Training (a few steps: loss, backward, AdamW, EMA, a checkpoint) and sampling the shipped model.
OMP_WAIT_POLICY=PASSIVE "${emu[@]}" "$build/dit" train --data /usr/share/datasets/fashion-mnist --depth 1 --hidden 32 \
    --heads 2 --batch 4 --steps 2 --ckpt-every 2 --log-every 1 -t 2 --seed 1 -o "$out/run" >"$out/log" 2>&1 || { cat "$out/log" >&2; exit 1; }
test -s "$out/run/checkpoints/0000002.safetensors"
echo "floor: dit train (2 steps, checkpoint written): ok"
OMP_WAIT_POLICY=PASSIVE "${emu[@]}" "$build/dit" sample -m models/dit-fmnist.safetensors --steps 2 --class 0 -n 2 \
    -t 2 --seed 1 -o "$out/s.png" >"$out/log" 2>&1 || { cat "$out/log" >&2; exit 1; }
test -s "$out/s.png"
echo "floor: dit sample of the shipped model (2 steps): ok"
echo "floor: passed"
