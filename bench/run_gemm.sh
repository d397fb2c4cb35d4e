#!/usr/bin/env bash
# The matrix-product kernels alone, dit vs PyTorch 2.x (whose bf16 products are oneDNN's, on AMX where the
# CPU has it): this is the measurement behind the choice of dit's own kernels over a library (docs/precision.md).
# Shapes: a square 2048^3 and the four products of a DiT-XL/2 block at 256 px for one image (T = 256 rows).
# Usage: bench/run_gemm.sh [BUILD_DIR]   env: THREADS (default all cores), TORCH_PY (default bench/.venv/bin/python)
set -euo pipefail
build=${1:-build}
threads=${THREADS:-$(nproc)}
python=${TORCH_PY:-bench/.venv/bin/python}
make -s "$build/bench_gemm" >/dev/null
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)   threads $threads"
echo "load before: $(uptime | sed 's/.*load average: //')"
echo "cores before: $(sh bench/cores.sh $build/dit)"
for shape in "2048 2048 2048" "256 3456 1152" "256 1152 1152" "256 4608 1152" "256 1152 4608"; do
    OMP_NUM_THREADS=$threads "$build/bench_gemm" $shape 10
    $python bench/ref_gemm.py $shape 10 "$threads"
done | $python -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.startswith("{")]
shapes = []
for r in rows:
    s = (r["M"], r["N"], r["K"])
    if s not in shapes: shapes.append(s)
kernels = ["sgemm", "torch-fp32", "bf16-amx", "bf16-amx-rows", "bf16-avx512-bf16", "torch-bf16"]
print("%-16s" % "M x N x K" + "".join("%18s" % k for k in kernels) + "   (GFLOP/s)")
for s in shapes:
    got = {r["kernel"]: r["gflops"] for r in rows if (r["M"], r["N"], r["K"]) == s}
    print("%-16s" % ("%dx%dx%d" % s) + "".join("%18s" % (got.get(k, "-")) for k in kernels))
'
echo "load after:  $(uptime | sed 's/.*load average: //')"
echo "cores after:  $(sh bench/cores.sh $build/dit)"
