#!/usr/bin/python3
"""PyTorch side of the autoencoder benchmark: tests/ref/vae_ref.py's AutoencoderKL (SD kl-f8, float32,
CPU) with the synthetic weights of docs/vae.md (seed 0); times decode of (batch, 4, S, S) latents and
encode of (batch, 3, 8S, 8S) images; prints one JSON line like build/vae_bench.

    /usr/bin/python3 bench/ref_vae.py --latent 32 --batch 1 --threads N --repeats 3

Run both back to back on a quiet machine with the same --threads (the lead's benchmark runs).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import vae_ref  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    m = vae_ref.fill_synthetic(vae_ref.AutoencoderKL(), 0).eval()
    build_s = time.perf_counter() - t0
    S = a.latent * 8
    g = torch.Generator().manual_seed(1)
    z = torch.rand(a.batch, 4, a.latent, a.latent, generator=g) * 4 - 2
    x = torch.rand(a.batch, 3, S, S, generator=g) * 2 - 1
    dec, enc = [], []
    with torch.inference_mode():
        for _ in range(a.warmup + a.repeats):
            t = time.perf_counter()
            m.decode(z)
            dec.append(time.perf_counter() - t)
            t = time.perf_counter()
            mo = m.encode_moments(x)
            enc.append(time.perf_counter() - t)
    print(json.dumps({"impl": "torch", "latent": a.latent, "image": S, "batch": a.batch, "threads": a.threads,
                      "repeats": a.repeats, "build_s": round(build_s, 3),
                      "decode_s": round(statistics.median(dec[a.warmup:]), 4),
                      "encode_s": round(statistics.median(enc[a.warmup:]), 4),
                      "checksum": float(mo.abs().sum())}))


if __name__ == "__main__":
    main()
