#!/usr/bin/python3
"""PyTorch (CPU) baseline for one DiT training step as train.py does it: forward, training_losses (MSE + VB with
learned sigma; our port in tests/ref/make_train_golden.py), backward, AdamW(lr 1e-4, wd 0), update_ema(0.9999).
The reference model of tests/ref/dit_ref.py with its initialize_weights. Prints one line of JSON.

    /usr/bin/python3 bench/ref_train.py --model DiT-S/2 --image-size 256 --batch 8 --threads N
    /usr/bin/python3 bench/ref_train.py --size 32 --channels 1 --patch 4 --hidden 256 --depth 6 --heads 4 --batch 8

seconds_per_step: median over --repeats steps after --warmup. gflop_step = 2 x 3 x forward GMACs x batch
(backward ~ 2 forwards, 2 flops per multiply-accumulate). Peak memory: resource.getrusage ru_maxrss.
"""
import argparse
import copy
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import diffusion_ref  # noqa: E402
import dit_ref  # noqa: E402
from make_train_golden import training_losses  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, choices=list(dit_ref.NAMED_CONFIGS))
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--depth", type=int, default=6)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model:
        cfg = dit_ref.named_config(args.model, args.image_size)
    else:
        cfg = dit_ref.full_config(input_size=args.size, patch_size=args.patch, in_channels=args.channels,
                                  hidden_size=args.hidden, depth=args.depth, num_heads=args.heads, num_classes=10)
    model = dit_ref.build(cfg)
    model.train()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    D = diffusion_ref.Diffusion()
    rng = np.random.default_rng(0)
    S, C, B = cfg["input_size"], cfg["in_channels"], args.batch
    x0 = torch.from_numpy(rng.uniform(-1, 1, (B, C, S, S)).astype(np.float32))
    times, loss = [], None
    for i in range(args.warmup + args.repeats):
        t1 = time.perf_counter()
        t = torch.randint(0, 1000, (B,))
        y = torch.randint(0, cfg["num_classes"], (B,))
        noise = torch.randn_like(x0)
        x_t = (D._extract(D.sqrt_alphas_cumprod, t, x0) * x0 + D._extract(D.sqrt_one_minus_alphas_cumprod, t, x0) * noise)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16"):
            out = model(x_t, t.float(), y)
        mse, vb, _ = training_losses(D, out.float(), x0, noise, t)
        loss = (mse + vb).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(0.9999).add_(pm, alpha=1 - 0.9999)
        if i >= args.warmup:
            times.append(time.perf_counter() - t1)
    g = dit_ref.gmacs(cfg)
    med = statistics.median(times)
    print(json.dumps({"impl": "torch", "model": args.model or "custom", "input_size": S, "in_channels": C, "batch": B,
                      "threads": torch.get_num_threads(), "seconds_per_step": med, "seconds_min": min(times),
                      "repeats": args.repeats, "gmacs_forward": g, "gflop_step": 6 * g * B,
                      "gflops_per_second": 6 * g * B / med, "params": dit_ref.param_count(cfg),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "loss": float(loss.detach()), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
