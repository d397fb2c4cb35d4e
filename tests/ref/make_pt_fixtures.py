# Writes the small PyTorch .pt fixtures of tests/test_torch_pt.c into tests/golden/pt/.
# Run from the repository root with Debian's torch:  /usr/bin/python3 tests/ref/make_pt_fixtures.py
# Every float tensor k (k stated per fixture, see the C test) holds, in C order, element i =
#     f(i, k) = ((i * 7 + k * 13) % 97 - 48) / 32
# (multiples of 1/32 in [-1.5, 1.5]: exact in f32, f16 and bf16), so the test needs no expected files.
import argparse
import copy
import os
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join("tests", "golden", "pt")


def formula(shape, k, dtype=torch.float32):
    n = int(np.prod(shape)) if len(shape) else 1
    i = np.arange(n, dtype=np.int64)
    v = ((i * 7 + k * 13) % 97 - 48) / 32.0
    return torch.tensor(v.reshape(shape), dtype=torch.float64).to(dtype)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(8, 24)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = Attention()


class Embedder(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(4, 8, kernel_size=2, stride=2)


class TinyDiT(nn.Module):
    # Official-style keys: pos_embed, x_embedder.proj.{weight,bias}, blocks.0.attn.qkv.{weight,bias}
    def __init__(self, k0):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 4, 8), requires_grad=False)
        self.x_embedder = Embedder()
        self.blocks = nn.ModuleList([Block()])
        with torch.no_grad():
            for k, (name, p) in enumerate(self.state_dict().items()):
                p.copy_(formula(tuple(p.shape), k0 + k))


class Evil:
    # Unpickling this with the real pickle module would run a shell command; our reader must not.
    def __init__(self, how):
        self.how = how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, ("touch /tmp/dit_pickle_must_not_run",))
        return (eval, ("__import__('os').system('touch /tmp/dit_pickle_must_not_run')",))


def save(obj, name, **kw):
    path = os.path.join(OUT, name)
    torch.save(obj, path, **kw)
    print(f"{path}: {os.path.getsize(path)} bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)

    # (a) a raw state_dict (an OrderedDict with _metadata), tensors k = 0..4 in state_dict order.
    model = TinyDiT(0)
    save(model.state_dict(), "official_sd.pt")

    # (b) train.py's checkpoint dict. model: k = 0..4; ema: k = 100..104; opt: AdamW after one step
    # on a copy of the model with grad = f(i, 200 + k) for every trainable parameter (pos_embed has no grad).
    ema = TinyDiT(100)
    trained = copy.deepcopy(model)
    opt = torch.optim.AdamW(trained.parameters(), lr=1e-4, weight_decay=0)
    for k, (name, p) in enumerate(trained.named_parameters()):
        if p.requires_grad:
            p.grad = formula(tuple(p.shape), 200 + k)
    opt.step()
    args = argparse.Namespace(model="DiT-XL/2", image_size=256, num_classes=1000, global_seed=0,
                              results_dir="results", epochs=1400, lr=1e-4, flag=True, nothing=None)
    extra = {"device": torch.device("cpu"), "np_scalar": np.float64(1.5), "np_array_dtype": np.dtype("f4"),
             "big": 1 << 70, "neg": -(1 << 40), "tuple": (1, 2.5, "x", b"raw")}
    save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args,
          "extra": extra}, "train_ckpt.pt")

    # (c) dtypes: half k=1, bf16 k=2, f64 k=3, and integer/bool tensors; plus nesting by list/tuple/int key.
    save({"half": formula((3, 5), 1, torch.float16),
          "bf16": formula((2, 3), 2, torch.bfloat16),
          "f64": formula((4,), 3, torch.float64),
          "i64": torch.arange(-3, 3, dtype=torch.int64),
          "i32": torch.arange(-2, 2, dtype=torch.int32),
          "u8": torch.arange(250, 256, dtype=torch.uint8),
          "i8": torch.arange(-3, 3, dtype=torch.int8),
          "i16": torch.arange(-3, 3, dtype=torch.int16),
          "bool": torch.tensor([True, False, True]),
          "scalar": torch.tensor(2.5),
          "empty": torch.zeros(0, 3),
          "nested": [formula((2,), 4), (formula((3,), 5), {7: formula((1,), 6)})]}, "dtypes.pt")

    # (d) views sharing one storage (base k = 0, shape [4, 6]) and an expand with stride 0.
    base = formula((4, 6), 0)
    save({"base": base,
          "t": base.t(),                # [6, 4] stride (1, 6)
          "slice": base[1:3, 2:5],      # offset 8, stride (6, 1)
          "step": base[:, ::2],         # stride (6, 2)
          "row": base[2],               # contiguous at offset 12
          "elem": base[1, 1],           # 0-dim at offset 7
          "expand": torch.arange(3.0).view(3, 1).expand(3, 4)}, "views.pt")   # stride (1, 0)

    # (e) an nn.Parameter saved directly (k = 9, shape [2, 3]).
    save(nn.Parameter(formula((2, 3), 9)), "parameter.pt")

    # (f) malicious: os.system and eval reductions next to a normal tensor w (k = 0, shape [2]).
    save({"w": formula((2,), 0), "evil": Evil("system"), "evil2": [Evil("eval")]}, "malicious.pt")

    # (h) other pickle protocols (torch.save writes 2 by default): a k=0 [2, 3], b.0 k=1 [2], c k=2 [3] f16.
    for proto in (1, 4, 5):
        save({"a": formula((2, 3), 0), "b": [formula((2,), 1)], "c": formula((3,), 2, torch.float16)},
             f"proto{proto}.pt", pickle_protocol=proto)

    # (g) the legacy (torch < 1.6) non-zip format.
    save(model.state_dict(), "legacy.pt", _use_new_zipfile_serialization=False)


if __name__ == "__main__":
    main()
