#!/usr/bin/env bash
# Forward-pass benchmark: dit vs PyTorch 2.x (our reference model tests/ref/dit_ref.py), same model, same
# synthetic weights, same batch and thread count, both precisions: dit fp32 / bf16 (--precision) and torch
# fp32 / bf16 autocast (torch.autocast("cpu", dtype=torch.bfloat16), oneDNN on AMX where present), run
# back to back. Prints seconds per forward, achieved GFLOP/s (2 x multiply-adds) and the ratios
# torch / dit in the same precision class (> 1: dit faster).
# Usage: bench/run.sh [BUILD_DIR]   env: THREADS (default: all cores), REPEATS (default 3),
#        TORCH_PY (default bench/.venv/bin/python: PyTorch 2.x from PyPI, made by scripts/setup.sh --bench)
set -euo pipefail
build=${1:-build}
threads=${THREADS:-$(nproc)}
repeats=${REPEATS:-3}
python=${TORCH_PY:-bench/.venv/bin/python}
$python -c "import torch" 2>/dev/null || { echo "bench: needs PyTorch 2.x in $python: run scripts/setup.sh --bench" >&2; exit 1; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)   torch $($python -c 'import torch; print(torch.__version__)')"
echo "load before: $(uptime | sed 's/.*load average: //')"
echo "cores before: $(sh bench/cores.sh $build/dit)"
printf "%-9s %5s | %8s %8s | %8s %8s | %8s %8s | %8s %8s | %9s %9s\n" model batch "dit f32" "GFLOP/s" "dit bf16" \
    "GFLOP/s" "torch32" "GFLOP/s" "torch bf" "GFLOP/s" "f32 ratio" "bf16 ratio"
bf16=1
sh bench/has_bf16.sh "$build/dit" || bf16=0
for spec in "DiT-S/2 8" "DiT-XL/2 2"; do
    set -- $spec
    model=$1 batch=$2
    common=(--model "$model" --image-size 256 --batch "$batch" --threads "$threads" --repeats "$repeats")
    d32=$("$build/bench_forward" "${common[@]}" --precision fp32)
    d16=null   # a CPU without a bf16 matrix path (AVX2 only, say) has no dit bf16 column: "-"
    if ((bf16)); then d16=$("$build/bench_forward" "${common[@]}" --precision bf16); fi
    t32=$($python bench/ref_forward.py "${common[@]}")
    t16=$($python bench/ref_forward.py "${common[@]}" --autocast bf16)
    $python - "$d32" "$d16" "$t32" "$t16" <<'PY'
import json, sys
d32, d16, t32, t16 = (json.loads(a) for a in sys.argv[1:5])
def g(r): return "%8.0f" % (2 * r["gmacs_total"] / r["seconds_per_forward"]) if r else "%8s" % "-"
def s(r): return "%8.3f" % r["seconds_per_forward"] if r else "%8s" % "-"
def ratio(t, d): return "%8.2fx" % (t["seconds_per_forward"] / d["seconds_per_forward"]) if d else "%9s" % "-"
print("%-9s %5d | %s %s | %s %s | %s %s | %s %s | %s %s" % (d32["model"], d32["batch"], s(d32), g(d32), s(d16), g(d16),
      s(t32), g(t32), s(t16), g(t16), ratio(t32, d32), ratio(t16, d16)))
if not d16:   # no dit bf16 here: dit fp32 against the faster of torch's two
    best = min((t32, t16), key=lambda r: r["seconds_per_forward"])
    print("%-9s %5s   dit fp32 vs torch's faster (%s): %.2fx" % ("", "", "bf16 autocast" if best is t16 else "fp32",
          best["seconds_per_forward"] / d32["seconds_per_forward"]))
PY
done
echo "load after:  $(uptime | sed 's/.*load average: //')"
echo "cores after:  $(sh bench/cores.sh $build/dit)"
echo "ratio = torch seconds / dit seconds in the same precision (f32: both fp32; bf16: dit bf16 vs torch bf16 autocast)."
