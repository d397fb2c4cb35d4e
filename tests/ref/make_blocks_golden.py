#!/usr/bin/python3
"""Write tests/golden/blocks/: forward outputs and parameter gradients of our PyTorch reference for the
block designs of reference.md §1.13 other than adaLN-Zero (adaln, cross-attention, in-context), on the
"tiny" config of tests/golden/dit/ (synthetic weights of docs/testing.md, seed 1; its x, t, y) and the
R of tests/golden/grad/tiny_R.npy (L = sum(out * R), so dL/dout = R).

    /work/venv-torch/bin/python tests/ref/make_blocks_golden.py   (after make_dit_golden.py, make_grad_golden.py)

Per block <b> ("cross-attention" is spelled "cross" in file names):
- <b>_out.npy          float32 (B, out_ch, S, S): forward output
- <b>_stats.npy        float64 (num_tensors, 3): per tensor in state_dict order: sum, sum of squares, max |.|
                       of its gradient (pos_embed: zeros)
- <b>_sample_idx.npy   int64 (K,): offsets into the parameter buffer (state_dict order), up to 8 seeded
                       positions per trainable tensor
- <b>_sample.npy       float32 (K,): the gradient there
configs.json records the config, the loss and the float32-vs-float64 deviations.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dit_ref  # noqa: E402
from make_dit_golden import CONFIGS, build_synthetic, config_dict  # noqa: E402

BLOCKS = (("adaln", "adaln"), ("cross-attention", "cross"), ("in-context", "incontext"))
SAMPLES_PER_TENSOR = 8


def run(cfg, seed, x, t, y, R, dtype):
    m = build_synthetic(cfg, seed, dtype)
    out = m(torch.from_numpy(x).to(dtype), torch.from_numpy(t).to(dtype), torch.from_numpy(y))
    loss = (out * torch.from_numpy(R).to(dtype)).sum()
    loss.backward()
    grads = dict((n, p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape)))
                 for n, p in m.named_parameters())
    return out.detach().numpy(), [(k, grads[k]) for k in m.state_dict()], float(loss.item())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    gold = os.path.normpath(os.path.join(here, "..", "golden"))
    out_dir = os.path.join(gold, "blocks")
    os.makedirs(out_dir, exist_ok=True)
    row = [r for r in CONFIGS if r[0] == "tiny"][0]
    name, base, B, seed = config_dict(row)
    x = np.load(os.path.join(gold, "dit", "tiny_x.npy"))
    t = np.load(os.path.join(gold, "dit", "tiny_t.npy"))
    y = np.load(os.path.join(gold, "dit", "tiny_y.npy"))
    R = np.load(os.path.join(gold, "grad", "tiny_R.npy"))
    meta = {"description": "forward outputs and gradients of L = sum(out * R) for the block designs of "
                           "reference.md 1.13, tiny config of tests/golden/dit (its x, t, y; synthetic "
                           "weights seed 1) and R = tests/golden/grad/tiny_R.npy", "configs": []}
    lines = []
    for block, short in BLOCKS:
        cfg = dict(base, block=block)
        out32, g32, loss32 = run(cfg, seed, x, t, y, R, torch.float32)
        out64, g64, loss64 = run(cfg, seed, x, t, y, R, torch.float64)
        assert [k for k, _ in g32] == [k for k, _ in dit_ref.param_shapes(cfg)]
        rng = np.random.default_rng(seed + 3000)
        stats, idx, sample = [], [], []
        offset, worst_rel = 0, 0.0
        for (k, a), (_, a64) in zip(g32, g64):
            a = a.astype(np.float32).reshape(-1)
            a64 = a64.reshape(-1)
            stats.append([float(a.astype(np.float64).sum()), float((a.astype(np.float64) ** 2).sum()),
                          float(np.abs(a).max())])
            if k != "pos_embed":
                peak = float(np.abs(a64).max())
                if peak > 0:
                    worst_rel = max(worst_rel, float(np.abs(a - a64).max()) / peak)
                pick = rng.choice(a.size, size=min(SAMPLES_PER_TENSOR, a.size), replace=False)
                idx += [offset + int(i) for i in sorted(pick)]
                sample += [float(a[i]) for i in sorted(pick)]
            offset += a.size
        files = {"out": short + "_out.npy", "stats": short + "_stats.npy", "sample_idx": short + "_sample_idx.npy",
                 "sample": short + "_sample.npy"}
        np.save(os.path.join(out_dir, files["out"]), out32.astype(np.float32))
        np.save(os.path.join(out_dir, files["stats"]), np.array(stats, dtype=np.float64))
        np.save(os.path.join(out_dir, files["sample_idx"]), np.array(idx, dtype=np.int64))
        np.save(os.path.join(out_dir, files["sample"]), np.array(sample, dtype=np.float32))
        out_dev = float(np.abs(out32.astype(np.float64) - out64).max())
        meta["configs"].append(dict(name="tiny", **cfg, batch=B, seed=seed, params=dit_ref.param_count(cfg),
                                    total_floats=offset, loss=loss32, loss_f64=loss64, files=files,
                                    max_abs_out=float(np.abs(out32).max()), out_f32_vs_f64=out_dev,
                                    grad_worst_rel_f32_vs_f64=worst_rel))
        lines.append("%-15s params %6d  loss %.6f (f64 %.6f)  max|out| %.3f  out f32-f64 %.1e  worst per-tensor "
                     "max|g32-g64|/max|g64| %.2e" % (block, offset, loss32, loss64, float(np.abs(out32).max()),
                                                     out_dev, worst_rel))
    with open(os.path.join(out_dir, "configs.json"), "w") as f:
        json.dump(meta, f, indent=1)
    size = sum(os.path.getsize(os.path.join(out_dir, n)) for n in os.listdir(out_dir) if n != "README.md")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("# Block design goldens (reference.md §1.13)\n\nMade by (torch %s, CPU):\n\n"
                "    /work/venv-torch/bin/python tests/ref/make_blocks_golden.py\n\n"
                "See the script's docstring for the files. float32 vs float64 of the same reference:\n\n```\n%s\n```\n\n"
                "Total size of this directory (without README): %d bytes.\n" % (torch.__version__, "\n".join(lines), size))
    print("\n".join(lines))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
