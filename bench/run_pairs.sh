#!/usr/bin/env bash
# The bf16 forward of one model, dit against PyTorch 2.x (bf16 autocast), in alternating pairs: dit, torch, dit,
# torch, ... PAIRS times, the order swapped every pair. A virtual machine's speed drifts by 5-15% over minutes
# (docs/precision.md), and it moves both sides of a pair alike; the median of the pairs' ratios is the figure
# that drift distorts least. bench/run.sh runs each side once, minutes apart.
# Usage: bench/run_pairs.sh [BUILD_DIR]   env: MODEL (default DiT-XL/2), BATCH (default 2), PAIRS (default 5),
#        REPEATS (forwards per run, default 5), THREADS (default: all cores), TORCH_PY (default bench/.venv/bin/python)
set -euo pipefail
build=${1:-build}
model=${MODEL:-DiT-XL/2}
batch=${BATCH:-2}
pairs=${PAIRS:-5}
repeats=${REPEATS:-5}
threads=${THREADS:-$(nproc)}
python=${TORCH_PY:-bench/.venv/bin/python}
$python -c "import torch" 2>/dev/null || { echo "bench: needs PyTorch 2.x in $python: run scripts/setup.sh --bench" >&2; exit 1; }
sh bench/has_bf16.sh "$build/dit" || { echo "bench: this CPU has no bf16 path for dit: nothing to pair" >&2; exit 1; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)   torch $($python -c 'import torch; print(torch.__version__)')"
echo "load before: $(uptime | sed 's/.*load average: //')"
common=(--model "$model" --image-size 256 --batch "$batch" --threads "$threads" --repeats "$repeats")
results=()
for ((i = 0; i < pairs; i++)); do
    if ((i % 2 == 0)); then
        d=$("$build/bench_forward" "${common[@]}" --precision bf16)
        t=$($python bench/ref_forward.py "${common[@]}" --autocast bf16)
    else
        t=$($python bench/ref_forward.py "${common[@]}" --autocast bf16)
        d=$("$build/bench_forward" "${common[@]}" --precision bf16)
    fi
    results+=("$d" "$t")
done
$python - "$model" "$batch" "${results[@]}" <<'PY'
import json, statistics, sys
model, batch, runs = sys.argv[1], sys.argv[2], [json.loads(a) for a in sys.argv[3:]]
ratios = []
print("%-9s %5s | %4s | %8s %8s | %8s %8s | %6s" % ("model", "batch", "pair", "dit bf16", "GFLOP/s", "torch bf", "GFLOP/s",
                                                    "ratio"))
for i in range(0, len(runs), 2):
    d, t = runs[i], runs[i + 1]
    r = t["seconds_per_forward"] / d["seconds_per_forward"]
    ratios.append(r)
    g = lambda x: 2 * x["gmacs_total"] / x["seconds_per_forward"]
    print("%-9s %5s | %4d | %8.3f %8.0f | %8.3f %8.0f | %5.2fx" % (model, batch, i // 2 + 1, d["seconds_per_forward"], g(d),
                                                                t["seconds_per_forward"], g(t), r))
print("median ratio %.2fx (lowest %.2fx, highest %.2fx) over %d pairs; ratio = torch seconds / dit seconds" %
      (statistics.median(ratios), min(ratios), max(ratios), len(ratios)))
PY
echo "load after:  $(uptime | sed 's/.*load average: //')"
