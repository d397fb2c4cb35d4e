#!/usr/bin/python3
"""Write tests/golden/grad/: parameter gradients of our PyTorch reference (autograd) for the "tiny" and
"odd" configs of tests/golden/dit/ (same synthetic weights, same x, t, y), for L = sum(out * R) with a
seeded R, i.e. dL/dout = R.

    /usr/bin/python3 tests/ref/make_grad_golden.py      (after tests/ref/make_dit_golden.py)

All gradients of "tiny" are 183K floats, too many to store, so per config <c> the directory holds:
- <c>_R.npy         float32 (B, out_ch, S, S): numpy.random.default_rng(seed + 1000).standard_normal
- <c>_stats.npy     float64 (num_tensors, 3): per tensor of the official table, in order: sum, sum of
                    squares and max |.| of its gradient (pos_embed: zeros, it is fixed)
- <c>_sample_idx.npy int64 (K,): flat offsets into the parameter buffer (official order, the layout of
                    dit's one float buffer), up to 8 seeded positions in every trainable tensor
- <c>_sample.npy    float32 (K,): the gradient at those offsets
- <c>_full.npy      float32: the full gradients of the small tensors listed in configs.json
                    ("full_tensors", concatenated in that order): x_embedder.*, y_embedder.*, final_layer.*
configs.json records the loss and the float32-vs-float64 deviation of the gradients.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dit_ref  # noqa: E402
from make_dit_golden import CONFIGS, build_synthetic, config_dict  # noqa: E402

NAMES = ("tiny", "odd")
SAMPLES_PER_TENSOR = 8
FULL_PREFIXES = ("x_embedder.", "y_embedder.", "final_layer.")


def gradients(cfg, seed, x, t, y, R, dtype):
    m = build_synthetic(cfg, seed, dtype)
    m.train(False)
    out = m(torch.from_numpy(x).to(dtype), torch.from_numpy(t).to(dtype), torch.from_numpy(y))
    loss = (out * torch.from_numpy(R).to(dtype)).sum()
    loss.backward()
    grads = []
    for name, prm in m.named_parameters():
        grads.append((name, np.zeros(tuple(prm.shape)) if prm.grad is None else prm.grad.numpy().copy()))
    # named_parameters() includes the frozen pos_embed (grad None); keep the state_dict order
    order = [k for k in m.state_dict()]
    d = dict(grads)
    return [(k, d[k]) for k in order], float(loss.item())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    gold = os.path.normpath(os.path.join(here, "..", "golden"))
    out_dir = os.path.join(gold, "grad")
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    meta = {"description": "DiT parameter gradients of L = sum(out * R), our PyTorch reference (autograd, "
                           "float32), synthetic weights and inputs of tests/golden/dit/",
            "configs": []}
    lines = []
    for row in CONFIGS:
        name, cfg, B, seed = config_dict(row)
        if name not in NAMES:
            continue
        x = np.load(os.path.join(gold, "dit", name + "_x.npy"))
        t = np.load(os.path.join(gold, "dit", name + "_t.npy"))
        y = np.load(os.path.join(gold, "dit", name + "_y.npy"))
        S, oc = cfg["input_size"], dit_ref.out_channels(cfg)
        R = np.random.default_rng(seed + 1000).standard_normal((B, oc, S, S), dtype=np.float32)
        g32, loss32 = gradients(cfg, seed, x, t, y, R, torch.float32)
        g64, loss64 = gradients(cfg, seed, x, t, y, R, torch.float64)
        shapes = dit_ref.param_shapes(cfg)
        assert [k for k, _ in g32] == [k for k, _ in shapes]

        rng = np.random.default_rng(seed + 2000)
        stats, idx, full, full_names = [], [], [], []
        offset, worst_rel = 0, 0.0
        for (k, a), (_, a64) in zip(g32, g64):
            a = a.astype(np.float32).reshape(-1)
            a64 = a64.reshape(-1)
            stats.append([float(a.astype(np.float64).sum()), float((a.astype(np.float64) ** 2).sum()),
                          float(np.abs(a).max())])
            if k != "pos_embed":
                n = a.size
                pick = rng.choice(n, size=min(SAMPLES_PER_TENSOR, n), replace=False)
                idx.extend(int(offset + i) for i in sorted(pick))
                scale = float(np.abs(a64).max())
                worst_rel = max(worst_rel, float(np.abs(a - a64).max()) / scale if scale > 0 else 0.0)
            if k.startswith(FULL_PREFIXES):
                full.append(a)
                full_names.append(k)
            offset += a.size
        flat = np.concatenate([a.astype(np.float32).reshape(-1) for _, a in g32])
        idx = np.array(idx, dtype=np.int64)
        files = {"R": name + "_R.npy", "stats": name + "_stats.npy", "sample_idx": name + "_sample_idx.npy",
                 "sample": name + "_sample.npy", "full": name + "_full.npy"}
        np.save(os.path.join(out_dir, files["R"]), R)
        np.save(os.path.join(out_dir, files["stats"]), np.array(stats, dtype=np.float64))
        np.save(os.path.join(out_dir, files["sample_idx"]), idx)
        np.save(os.path.join(out_dir, files["sample"]), flat[idx])
        np.save(os.path.join(out_dir, files["full"]), np.concatenate(full))
        entry = dict(name=name, seed=seed, r_seed=seed + 1000, sample_seed=seed + 2000, loss=loss32,
                     loss_f64=loss64, total_floats=int(flat.size), num_tensors=len(g32),
                     full_tensors=full_names, samples=int(idx.size), files=files,
                     max_abs_f32_vs_f64_over_tensor_max=worst_rel)
        meta["configs"].append(entry)
        line = ("%-5s loss %.6f (f64 %.6f)  %d floats, %d samples, %d full floats; worst per-tensor "
                "max|g32-g64| / max|g64| = %.2e" % (name, loss32, loss64, flat.size, idx.size,
                                                     sum(a.size for a in full), worst_rel))
        print(line)
        lines.append(line)
    with open(os.path.join(out_dir, "configs.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir) if f != "README.md")
    with open(os.path.join(out_dir, "README.md"), "w") as fh:
        fh.write(README.format(report="\n".join(lines), total=total))
    print("wrote %s (%d bytes before README)" % (out_dir, total))


README = """# DiT gradient goldens

Made by (Debian's Python, torch 1.13, CPU):

    /usr/bin/python3 tests/ref/make_grad_golden.py      (reads tests/golden/dit/ for x, t, y)

Parameter gradients of our PyTorch reference (`tests/ref/dit_ref.py`, autograd, float32) of
L = sum(out * R) for the "tiny" and "odd" configs of tests/golden/dit/ (synthetic weights of
docs/testing.md, the same x, t, y), so dL/dout = R. See the script's docstring for the files; offsets
are into the parameter buffer in the official order (dit's `m->params` layout). pos_embed is fixed: zero.

The same gradients in float64 differ from the float32 ones by (worst over tensors of
max|g32 - g64| / max|g64| of the tensor):

```
{report}
```

Total size of this directory (without README): {total} bytes.
"""

if __name__ == "__main__":
    main()
