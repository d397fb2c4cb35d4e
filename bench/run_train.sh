#!/usr/bin/env bash
# One training step (forward + loss + backward + AdamW + EMA): dit (bench/bench_train.c) vs the PyTorch
# reference (bench/ref_train.py), same model, batch and threads, run alternately so that load from other
# work falls on both alike. Prints seconds per step, GFLOP/s (2 x 3 x forward multiply-adds: forward +
# two backward products) and the ratio torch / dit (> 1: dit faster), and the peak memory of each.
# Usage: bench/run_train.sh [BUILD_DIR]   env: THREADS (default: all cores), ROUNDS (default 2)
set -euo pipefail
build=${1:-build}
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-2}
python=/usr/bin/python3
$python -c "import torch" 2>/dev/null || { echo "bench: needs Debian's python3-torch: run scripts/setup.sh --bench" >&2; exit 1; }
echo "load before: $(uptime | sed 's/.*load average: //')"
printf "%-26s %5s | %9s %8s %8s | %9s %8s %8s | %6s\n" model batch "dit s" "GFLOP/s" "peak MB" "torch s" "GFLOP/s" "peak MB" ratio
run_pair() {   # label, then the shared arguments
    local label=$1
    shift
    local ours=() refs=()
    for ((r = 0; r < rounds; r++)); do
        ours+=("$("$build/bench_train" "$@" --threads "$threads")")
        refs+=("$($python bench/ref_train.py "$@" --threads "$threads")")
    done
    $python - "$label" "${#ours[@]}" "${ours[@]}" "${refs[@]}" <<'PY'
import json, statistics, sys
label, n = sys.argv[1], int(sys.argv[2])
ours = [json.loads(s) for s in sys.argv[3:3 + n]]
refs = [json.loads(s) for s in sys.argv[3 + n:3 + 2 * n]]
def med(runs, key): return statistics.median(r[key] for r in runs)
a, b = med(ours, "seconds_per_step"), med(refs, "seconds_per_step")
flops = ours[0]["gflop_step"]
print("%-26s %5d | %9.3f %8.1f %8.0f | %9.3f %8.1f %8.0f | %5.2fx" % (label, ours[0]["batch"], a, flops / a,
      max(r["peak_rss_mb"] for r in ours), b, flops / b, max(r["peak_rss_mb"] for r in refs), b / a))
PY
}
run_pair "DiT-S/2 256px latents" --model DiT-S/2 --image-size 256 --batch 8
run_pair "FMNIST 32x32x1 p4 D256 L6" --size 32 --channels 1 --patch 4 --hidden 256 --depth 6 --heads 4 --batch 64
echo "load after:  $(uptime | sed 's/.*load average: //')"
