#!/bin/sh
# dit's autoencoder vs the PyTorch reference (bench/vae_bench.c vs bench/ref_vae.py), run alternately
# (dit, torch, dit, torch, ...) so that load from other work on the machine falls on both alike.
# Prints every run, then the median over rounds of each side's per-run median, the torch/dit ratio
# (> 1: dit faster) and GFLOP/s = 2 x conv MACs / s (MACs from ref_vae.py --count-macs: every conv and
# linear, plus attention's two T x T x C products; norms, activations, softmax and adds are not counted).
# On AVX512-BF16 dit's bf16 stride-1 3x3 convs run as Winograd F(2x2,3x3) (src/ops/cpu/conv_winograd.c), which
# does 2.25x fewer multiply-adds (4x fewer for an Upsample2D's conv), so its figure is effective GFLOP/s: the
# direct convolution's flops per second, which may exceed the machine's peak. On AMX they run direct.
# DIT_WINOGRAD=0|1 forces either form.
# Usage: bench/run_vae.sh [rounds 5] [threads 2] [latent 32]   (builds build/vae_bench first)
#        VAE_BENCH=/path/to/old/vae_bench bench/run_vae.sh   (times another build of the dit side instead)
set -eu
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
THREADS=${2:-2}
LATENT=${3:-32}
PY=${TORCH_PY:-bench/.venv/bin/python}
BENCH=${VAE_BENCH:-}
if [ -z "$BENCH" ]; then
    make -s build/vae_bench >/dev/null
    BENCH=build/vae_bench
fi
echo "load before: $(uptime | sed 's/.*load average: //')"
echo "cores before: $(sh bench/cores.sh build/dit)"
# a CPU without a bf16 matrix path has no dit bf16 column, and no torch bf16 one either: autocast there emulates
# bf16 (on an AVX2-only AMD EPYC one torch bf16 decode ran over 20 minutes, against seconds in fp32)
BF16=1
sh bench/has_bf16.sh build/dit || BF16=0
MACS=$($PY bench/ref_vae.py --count-macs --latent "$LATENT")
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
i=0
while [ "$i" -lt "$ROUNDS" ]; do
    "$BENCH" --latent "$LATENT" --threads "$THREADS" --repeats 3 --warmup 1 | tee -a "$LOG"
    [ "$BF16" = 0 ] || "$BENCH" --latent "$LATENT" --threads "$THREADS" --repeats 3 --warmup 1 --precision bf16 | tee -a "$LOG"
    $PY bench/ref_vae.py --latent "$LATENT" --threads "$THREADS" --repeats 3 --warmup 1 | tee -a "$LOG"
    [ "$BF16" = 0 ] || $PY bench/ref_vae.py --latent "$LATENT" --threads "$THREADS" --repeats 3 --warmup 1 --autocast bf16 | tee -a "$LOG"
    i=$((i + 1))
done
echo "load after:  $(uptime | sed 's/.*load average: //')"
echo "cores after:  $(sh bench/cores.sh build/dit)"
$PY - "$LOG" "$MACS" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
macs = json.loads(sys.argv[2])
for phase in ("decode", "encode"):
    key = lambda r: r["impl"] + ("-bf16" if "bf16" in (r.get("autocast"), r.get("precision")) else "")
    kinds = ("dit", "dit-bf16", "torch", "torch-bf16")
    t = {k: statistics.median(r[phase + "_s"] for r in runs if key(r) == k) for k in kinds
         if any(key(r) == k for r in runs)}
    flops = 2 * macs[phase + "_macs"]
    bf16 = f"bf16 {t['torch-bf16'] / t['dit-bf16']:.2f}x" if "dit-bf16" in t else "no bf16 matrix path on this CPU"
    print(f"{phase} [{flops / 1e9:.0f} GFLOP]: " + ", ".join(f"{k} {t[k]:.3f} s ({flops / t[k] / 1e9:.0f} GFLOP/s)"
          for k in kinds if k in t) + f"; torch/dit fp32 {t['torch'] / t['dit']:.2f}x, {bf16}")
EOF
