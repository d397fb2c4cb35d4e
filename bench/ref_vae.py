#!/usr/bin/python3
"""PyTorch side of the autoencoder benchmark: tests/ref/vae_ref.py's AutoencoderKL (SD kl-f8, float32,
CPU) with the synthetic weights of docs/vae.md (seed 0); times decode of (batch, 4, S, S) latents and
encode of (batch, 3, 8S, 8S) images; prints one JSON line like build/vae_bench.

    /usr/bin/python3 bench/ref_vae.py --latent 32 --batch 1 --threads N --repeats 3

Run both back to back on a quiet machine with the same --threads (the lead's benchmark runs), or use
bench/run_vae.sh, which alternates them. --count-macs prints the multiply-accumulates of one decode and
one encode instead of timing: every Conv2d (Cout * Cin * KH * KW * OH * OW) and Linear (out * in * rows),
plus attention's two T x T x C products; GroupNorm, SiLU, softmax and adds are not counted.
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


def count_macs(latent, batch):
    m = vae_ref.AutoencoderKL().eval()
    macs = [0]

    def conv_hook(mod, inp, out):
        macs[0] += out.numel() * mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]

    def linear_hook(mod, inp, out):
        macs[0] += out.numel() * mod.in_features

    def attention_hook(mod, inp, out):
        B, C, H, W = inp[0].shape
        macs[0] += 2 * B * (H * W) ** 2 * C

    for mod in m.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(conv_hook)
        elif isinstance(mod, torch.nn.Linear):
            mod.register_forward_hook(linear_hook)
        elif isinstance(mod, vae_ref.Attention):
            mod.register_forward_hook(attention_hook)
    S = latent * 8
    with torch.inference_mode():
        m.decode(torch.zeros(batch, 4, latent, latent))
        decode, macs[0] = macs[0], 0
        m.encode_moments(torch.zeros(batch, 3, S, S))
    print(json.dumps({"latent": latent, "image": S, "batch": batch, "decode_macs": decode, "encode_macs": macs[0]}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--count-macs", action="store_true")
    ap.add_argument("--autocast", choices=["none", "bf16"], default="none",
                    help="bf16: torch.autocast('cpu', dtype=torch.bfloat16)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.count_macs:
        count_macs(a.latent, a.batch)
        return
    t0 = time.perf_counter()
    m = vae_ref.fill_synthetic(vae_ref.AutoencoderKL(), 0).eval()
    build_s = time.perf_counter() - t0
    S = a.latent * 8
    g = torch.Generator().manual_seed(1)
    z = torch.rand(a.batch, 4, a.latent, a.latent, generator=g) * 4 - 2
    x = torch.rand(a.batch, 3, S, S, generator=g) * 2 - 1
    dec, enc = [], []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.autocast == "bf16"):
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
                      "checksum": float(mo.float().abs().sum()), "autocast": a.autocast,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
