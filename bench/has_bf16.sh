#!/bin/sh
# Exits 0 when this CPU has a bf16 matrix path (AMX or AVX512-BF16, as `dit info --hw` reports it), 1 when not:
# the benchmark scripts then leave out the bf16 runs (dit refuses them, and PyTorch's autocast only emulates
# bf16 there, 10x slower than its own fp32). Usage: bench/has_bf16.sh [DIT_BINARY (build/dit)]
dit=${1:-build/dit}
[ -x "$dit" ] || make -s "$dit" >/dev/null 2>&1 || exit 1
"$dit" info --hw 2>/dev/null | grep -q '^kernel path: *\(amx\|avx512-bf16\)'
