#!/usr/bin/env bash
# Forward-pass benchmark: dit vs our PyTorch reference (tests/ref/dit_ref.py, Debian's torch), same model,
# same synthetic weights, same batch and thread count, run back to back in one go. Prints seconds per
# forward, achieved GFLOP/s (2 x multiply-adds) and the speed ratio.
# Usage: bench/run.sh [BUILD_DIR]   env: THREADS (default: all cores), REPEATS (default 3)
set -euo pipefail
build=${1:-build}
threads=${THREADS:-$(nproc)}
repeats=${REPEATS:-3}
python=/usr/bin/python3
$python -c "import torch" 2>/dev/null || { echo "bench: needs Debian's python3-torch: run scripts/setup.sh --bench" >&2; exit 1; }

printf "%-9s %5s %7s | %10s %9s | %10s %9s | %6s\n" model batch threads "dit s" "GFLOP/s" "torch s" "GFLOP/s" ratio
for spec in "DiT-S/2 8" "DiT-XL/2 2"; do
    set -- $spec
    model=$1 batch=$2
    ours=$("$build/bench_forward" --model "$model" --image-size 256 --batch "$batch" --threads "$threads" --repeats "$repeats")
    ref=$($python bench/ref_forward.py --model "$model" --image-size 256 --batch "$batch" --threads "$threads" --repeats "$repeats")
    $python - "$ours" "$ref" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ga = 2 * a["gmacs_total"] / a["seconds_per_forward"]
gb = 2 * b["gmacs_total"] / b["seconds_per_forward"]
print("%-9s %5d %7d | %10.3f %9.1f | %10.3f %9.1f | %5.2fx" % (a["model"], a["batch"], a["threads"],
      a["seconds_per_forward"], ga, b["seconds_per_forward"], gb, b["seconds_per_forward"] / a["seconds_per_forward"]))
PY
done
echo "ratio = torch seconds / dit seconds (higher is better for dit); GFLOP/s counts 2 flops per multiply-add."
