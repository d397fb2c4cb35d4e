#!/usr/bin/python3
"""The seeded synthetic weight formula of docs/testing.md, bit-identical to src/models/synthetic.c.

k = index of the tensor in the official state_dict order (pos_embed is k = 0 and is skipped: it keeps
its computed sin-cos values, but it still counts, so x_embedder.proj.weight is k = 1); i = element
index in C order. All hash arithmetic is uint32 with wrap-around; u and the scale are float32.

`python3 tests/ref/synthetic.py` prints the check values quoted in docs/testing.md.
"""
import sys

import numpy as np
import torch

M32 = 0xFFFFFFFF


def synthetic_u(numel, k, seed):
    """u in [-1, 1) (float32) for elements i = 0..numel-1 of the k-th tensor."""
    assert numel < 2 ** 32
    i = np.arange(numel, dtype=np.uint32)
    add = np.uint32((((k + 1) * 40503) + (seed * 97531)) & M32)
    with np.errstate(over="ignore"):
        h = i * np.uint32(2654435761) + add
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x7feb352d)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x846ca68b)
        h ^= h >> np.uint32(16)
    # (h >> 8) < 2^24 is exact in float32; * 2^-23 and - 1 are exact too.
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 / 16777216.0) - np.float32(1.0)


def tensor_scale(name, shape):
    """float32 scale: 1.0 for the label table, 0.1f for 1-D tensors, 1.0f/sqrtf(fan_in) otherwise."""
    if name == "y_embedder.embedding_table.weight":
        return np.float32(1.0)
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return np.float32(1.0) / np.sqrt(np.float32(fan_in))
    return np.float32(0.1)


def synthetic_tensor(name, shape, k, seed):
    """float32 numpy array of the given shape."""
    n = int(np.prod(shape))
    v = tensor_scale(name, shape) * synthetic_u(n, k, seed)
    assert v.dtype == np.float32
    return v.reshape(shape)


def synthetic_state_dict(shapes, seed, pos_embed=None):
    """OrderedDict name -> float32 numpy array from [(name, shape)] (official order).
    pos_embed (k = 0) is taken from the given array (the computed sin-cos), never random."""
    from collections import OrderedDict
    out = OrderedDict()
    for k, (name, shape) in enumerate(shapes):
        if name == "pos_embed":
            out[name] = None if pos_embed is None else np.asarray(pos_embed, dtype=np.float32)
            continue
        out[name] = synthetic_tensor(name, tuple(shape), k, seed)
    return out


def fill_synthetic(model, seed):
    """Overwrite every tensor of model.state_dict() except pos_embed (which is reset to the computed
    sin-cos table) with the formula; works for float32 and float64 models (the float32 values are
    computed first and then converted exactly)."""
    sd = model.state_dict()
    with torch.no_grad():
        for k, (name, t) in enumerate(sd.items()):
            if name == "pos_embed":
                pe = torch.from_numpy(model.compute_pos_embed()).to(torch.float32).unsqueeze(0)
                t.copy_(pe.to(t.dtype))
                continue
            v = synthetic_tensor(name, tuple(t.shape), k, seed)
            t.copy_(torch.from_numpy(v).to(t.dtype))
    return model


def check_values(seed=1):
    """The first values of k = 1 (x_embedder.proj.weight) for the 'tiny' config ([64, 4, 2, 2],
    fan_in 16, scale 0.25) and of k = 2 (x_embedder.proj.bias, scale 0.1)."""
    u = synthetic_u(4, 1, seed)
    w = synthetic_tensor("x_embedder.proj.weight", (64, 4, 2, 2), 1, seed).reshape(-1)[:4]
    b = synthetic_tensor("x_embedder.proj.bias", (64,), 2, seed)[:4]
    return u, w, b


def _hash_scalar(i, k, seed):
    h = (i * 2654435761 + (k + 1) * 40503 + seed * 97531) & M32
    h ^= h >> 16
    h = (h * 0x7feb352d) & M32
    h ^= h >> 15
    h = (h * 0x846ca68b) & M32
    h ^= h >> 16
    return h


if __name__ == "__main__":
    # cross-check the vectorised numpy version against plain Python integers
    for (k, seed) in [(1, 1), (7, 0), (300, 12345), (2, 0xFFFFFFFF)]:
        idx = [0, 1, 2, 3, 1000, 65535, 99999]
        u = synthetic_u(100000, k, seed)
        ref = [np.float32((_hash_scalar(i, k, seed) >> 8) / 8388608.0 - 1.0) for i in idx]
        assert all(u[j] == r for j, r in zip(idx, ref)), (k, seed)
    u, w, b = check_values(1)
    np.set_printoptions(precision=9)
    print("seed 1, k=1 u[0..3]            =", " ".join("%.9g" % x for x in u))
    print("seed 1, k=1 (tiny x_embedder.proj.weight, scale 0.25) value[0..3] =",
          " ".join("%.9g" % x for x in w), "  (hex", " ".join("%08x" % x for x in w.view(np.uint32)), ")")
    print("seed 1, k=2 (x_embedder.proj.bias, scale 0.1f) value[0..3] =",
          " ".join("%.9g" % x for x in b), "  (hex", " ".join("%08x" % x for x in b.view(np.uint32)), ")")
    print("scale(1/sqrt(1152)) float32 = %.9g (hex %08x)" % (tensor_scale("w", (3456, 1152)),
                                                            tensor_scale("w", (3456, 1152)).view(np.uint32)))
    sys.exit(0)
