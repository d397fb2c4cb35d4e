"""PyTorch 2.x side of the GEMM comparison (bench/bench_gemm.c): out = A @ B^T as nn.Linear computes it,
float32 (MKL/oneDNN sgemm) and bf16 (oneDNN, AMX where present). Prints one JSON line per precision.

    bench/.venv/bin/python bench/ref_gemm.py M N K [repeats] [threads]
"""
import json
import statistics
import sys
import time

import torch


def main():
    M, N, K = (int(v) for v in sys.argv[1:4])
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    if len(sys.argv) > 5:
        torch.set_num_threads(int(sys.argv[5]))
    g = torch.Generator().manual_seed(0)
    A = torch.rand(M, K, generator=g) - 0.5
    B = torch.rand(N, K, generator=g) - 0.5
    for name, dtype in (("torch-fp32", torch.float32), ("torch-bf16", torch.bfloat16)):
        a, b = A.to(dtype), B.to(dtype)
        times = []
        with torch.no_grad():
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                torch.nn.functional.linear(a, b)
                if i:
                    times.append(time.perf_counter() - t0)
        s = statistics.median(times)
        print(json.dumps({"kernel": name, "M": M, "N": N, "K": K, "seconds": round(s, 6),
                          "gflops": round(2.0 * M * N * K / s / 1e9, 1), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
