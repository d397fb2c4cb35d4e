#!/usr/bin/env bash
# One training step (forward + loss + backward + AdamW + EMA): dit (bench/bench_train.c) vs the PyTorch
# reference (bench/ref_train.py), same model, batch and threads, run alternately so that load from other
# work falls on both alike. Prints seconds per step, GFLOP/s (2 x 3 x forward multiply-adds: forward +
# two backward products) and the ratio torch / dit (> 1: dit faster), and the peak memory of each.
# Each pair runs twice: dit fp32 vs torch fp32, and dit bf16 (--precision bf16: bf16 products, fp32 master
# weights) vs torch bf16 autocast (forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)).
# Usage: bench/run_train.sh [BUILD_DIR]   env: THREADS (default: all cores), ROUNDS (default 2),
#        TORCH_PY (default bench/.venv/bin/python: PyTorch 2.x from PyPI, made by scripts/setup.sh --bench)
set -euo pipefail
build=${1:-build}
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-2}
python=${TORCH_PY:-bench/.venv/bin/python}
$python -c "import torch" 2>/dev/null || { echo "bench: needs PyTorch 2.x in $python: run scripts/setup.sh --bench" >&2; exit 1; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)   torch $($python -c 'import torch; print(torch.__version__)')"
echo "load before: $(uptime | sed 's/.*load average: //')"
echo "cores before: $(sh bench/cores.sh $build/dit)"
printf "%-28s %5s | %9s %8s %8s | %9s %8s %8s | %6s\n" model batch "dit s" "GFLOP/s" "peak MB" "torch s" "GFLOP/s" "peak MB" ratio
run_pair() {   # label, precision (fp32 | bf16), then the shared arguments
    local label="$1 $2" precision=$2 autocast=none
    shift 2
    [[ $precision == bf16 ]] && autocast=bf16
    local ours=() refs=()
    for ((r = 0; r < rounds; r++)); do
        ours+=("$("$build/bench_train" "$@" --threads "$threads" --precision "$precision")")
        refs+=("$($python bench/ref_train.py "$@" --threads "$threads" --autocast "$autocast")")
    done
    $python - "$label" "${#ours[@]}" "${ours[@]}" "${refs[@]}" <<'PY'
import json, statistics, sys
label, n = sys.argv[1], int(sys.argv[2])
ours = [json.loads(s) for s in sys.argv[3:3 + n]]
refs = [json.loads(s) for s in sys.argv[3 + n:3 + 2 * n]]
def med(runs, key): return statistics.median(r[key] for r in runs)
a, b = med(ours, "seconds_per_step"), med(refs, "seconds_per_step")
flops = ours[0]["gflop_step"]
print("%-28s %5d | %9.3f %8.1f %8.0f | %9.3f %8.1f %8.0f | %5.2fx" % (label, ours[0]["batch"], a, flops / a,
      max(r["peak_rss_mb"] for r in ours), b, flops / b, max(r["peak_rss_mb"] for r in refs), b / a))
PY
}
precisions="fp32 bf16"
if ! sh bench/has_bf16.sh "$build/dit"; then
    precisions=fp32
    echo "(no bf16 matrix path on this CPU: dit trains in fp32 only; torch's bf16 autocast would emulate it)"
fi
for p in $precisions; do
    run_pair "DiT-S/2 32x32x4" $p --model DiT-S/2 --image-size 256 --batch 8
    run_pair "FMNIST 32x32x1 p4 D256" $p --size 32 --channels 1 --patch 4 --hidden 256 --depth 6 --heads 4 --batch 64
done
echo "load after:  $(uptime | sed 's/.*load average: //')"
echo "cores after:  $(sh bench/cores.sh $build/dit)"
