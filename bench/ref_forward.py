#!/usr/bin/python3
"""PyTorch (CPU) baseline for the DiT forward: the reference model of tests/ref/dit_ref.py with synthetic
weights (seed 0, docs/testing.md). Prints one line of JSON.

    /usr/bin/python3 bench/ref_forward.py --model DiT-XL/2 --image-size 256 --batch 1 --threads 8 --repeats 3

Inputs as in the goldens: numpy.random.default_rng(seed 0): x standard_normal float32 (B,4,S,S), then
t integers [0,1000), then y integers [0,1000). seconds_per_forward is the median over --repeats timed
runs after --warmup untimed ones. "gmacs" is per sample (the paper's "Gflops" convention, same as
dit_config_gmacs); "gmacs_total" = batch * gmacs.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import dit_ref  # noqa: E402
from synthetic import fill_synthetic  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="DiT-XL/2", choices=list(dit_ref.NAMED_CONFIGS))
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: torch.autocast('cpu', dtype=torch.bfloat16), the fastest CPU mode of PyTorch 2.x")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cfg = dit_ref.named_config(args.model, args.image_size)
    t0 = time.perf_counter()
    model = dit_ref.build(cfg, init="none")
    fill_synthetic(model, args.seed)
    model.eval()
    build_s = time.perf_counter() - t0

    rng = np.random.default_rng(args.seed)
    S, C = cfg["input_size"], cfg["in_channels"]
    x = torch.from_numpy(rng.standard_normal((args.batch, C, S, S), dtype=np.float32))
    t = torch.from_numpy(rng.integers(0, 1000, size=args.batch, dtype=np.int64)).float()
    y = torch.from_numpy(rng.integers(0, cfg["num_classes"], size=args.batch, dtype=np.int64))

    times = []
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16")
    with torch.no_grad(), autocast:
        for i in range(args.warmup + args.repeats):
            t1 = time.perf_counter()
            out = model(x, t, y)
            dt = time.perf_counter() - t1
            if i >= args.warmup:
                times.append(dt)
    g = dit_ref.gmacs(cfg)
    med = statistics.median(times)
    print(json.dumps({"impl": "pytorch", "model": args.model, "image_size": args.image_size,
                      "batch": args.batch, "threads": args.threads,
                      "seconds_per_forward": med, "seconds_min": min(times), "repeats": args.repeats,
                      "gmacs": round(g, 4), "gmacs_total": round(g * args.batch, 4),
                      "gmacs_per_second": round(g * args.batch / med, 3),
                      "params": dit_ref.param_count(cfg), "build_seconds": round(build_s, 2),
                      "out_checksum": float(out.double().abs().sum()),
                      "autocast": args.autocast, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
