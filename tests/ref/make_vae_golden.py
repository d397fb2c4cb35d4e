#!/usr/bin/python3
"""Write tests/golden/vae/ (see the README written there):

    /usr/bin/python3 tests/ref/make_vae_golden.py [--out tests/golden/vae]

- small_*: the reduced SD config (block_out [32, 32, 64, 64], 2 layers per block, 32 groups) with the
  synthetic weights of docs/vae.md (seed 3), run in float64: encoder moments of a (2, 3, 32, 48) input
  and the decoder output of a (2, 4, 4, 6) latent. small_names.txt: the parameter table order.
- resnet512_*, attn512_*: one ResnetBlock2D(512, 512) and the mid-block Attention(512) at full SD width
  on a (1, 512, 4, 4) input (synthetic weights, seeds 5 and 7, k = index in the module's state_dict).
- layout_*: the "layout" config (block_out [4, 4, 8], 1 layer per block, 2 groups, seed 9) saved as
  diffusers (current attention names), diffusers with the older query/key/value/proj_attn names, CompVis
  .ckpt ({"state_dict": {"first_stage_model.<ldm key>": ...}}) and CompVis .safetensors (bare ldm keys).
- img_*: image fixtures, their PIL RGB decode and the ADM center_crop_arr result (PIL).
"""
import argparse
import json
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vae_ref  # noqa: E402

SMALL = dict(block_out=(32, 32, 64, 64), layers_per_block=2, norm_groups=32)
LAYOUT = dict(block_out=(4, 4, 8), layers_per_block=1, norm_groups=2)


def save_safetensors(path, tensors, metadata=None):
    header, offset, blobs = OrderedDict(), 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def rng_array(seed, shape, lo=-1.0, hi=1.0):
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(np.float32)


def small_goldens(out):
    m = vae_ref.AutoencoderKL(**SMALL)
    vae_ref.fill_synthetic(m, 3)
    with open(os.path.join(out, "small_names.txt"), "w") as f:
        f.write("".join(k + "\n" for k in m.state_dict().keys()))
    m = m.double()
    x = rng_array(100, (2, 3, 32, 48))
    z = rng_array(101, (2, 4, 4, 6), -2.0, 2.0)
    with torch.no_grad():
        mo = m.encode_moments(torch.from_numpy(x).double()).float().numpy()
        y = m.decode(torch.from_numpy(z).double()).float().numpy()
    for name, a in (("small_x", x), ("small_moments", mo), ("small_z", z), ("small_decoded", y)):
        np.save(os.path.join(out, name + ".npy"), a)


def block_goldens(out):
    torch.manual_seed(0)
    for name, module, seed in (("resnet512", vae_ref.ResnetBlock2D(512, 512, 32), 5),
                               ("attn512", vae_ref.Attention(512, 32), 7)):
        vae_ref.fill_synthetic(module, seed)
        module = module.double()
        x = rng_array(200 + seed, (1, 512, 4, 4), -2.0, 2.0)
        with torch.no_grad():
            y = module(torch.from_numpy(x).double()).float().numpy()
        np.save(os.path.join(out, name + "_x.npy"), x)
        np.save(os.path.join(out, name + "_out.npy"), y)


def layout_fixtures(out):
    m = vae_ref.AutoencoderKL(**LAYOUT)
    sd = vae_ref.synthetic_state_dict(m, 9)
    levels = len(LAYOUT["block_out"])
    save_safetensors(os.path.join(out, "layout_diffusers.safetensors"), sd, {"format": "pt"})
    save_safetensors(os.path.join(out, "layout_diffusers_old.safetensors"), vae_ref.to_old_attention_names(sd))
    cv = vae_ref.to_compvis(sd, levels)
    save_safetensors(os.path.join(out, "layout_compvis.safetensors"), cv)
    ckpt = {"state_dict": OrderedDict(("first_stage_model." + k, torch.from_numpy(np.array(v))) for k, v in cv.items()),
            "global_step": 840000}
    torch.save(ckpt, os.path.join(out, "layout_compvis.ckpt"))


def image_fixtures(out):
    from PIL import Image
    g = np.random.default_rng(7)
    yy, xx = np.mgrid[0:200, 0:300].astype(np.float32)
    smooth = np.stack([128 + 100 * np.sin(xx / 23.0), 128 + 100 * np.cos(yy / 17.0), (xx + yy) * 0.5 % 256], -1)
    images = {
        "tiny.png": Image.fromarray(g.integers(0, 256, (11, 13, 3), dtype=np.uint8), "RGB"),
        "gray.png": Image.fromarray(g.integers(0, 256, (50, 70), dtype=np.uint8), "L"),
        "rgba.png": Image.fromarray(g.integers(0, 256, (24, 40, 4), dtype=np.uint8), "RGBA"),
        "palette.png": Image.fromarray(g.integers(0, 256, (30, 20, 3), dtype=np.uint8), "RGB").quantize(16),
        "photo.jpg": Image.fromarray(np.clip(smooth[:80, :100] + g.normal(0, 8, (80, 100, 3)), 0, 255).astype(np.uint8), "RGB"),
        "gray.jpg": Image.fromarray(np.clip(smooth[:45, :37, 0] + g.normal(0, 8, (45, 37)), 0, 255).astype(np.uint8), "L"),
        "large.png": Image.fromarray(np.clip(smooth + g.normal(0, 3, (200, 300, 3)), 0, 255).astype(np.uint8), "RGB"),
    }
    crops = {"tiny.png": [16], "gray.png": [16], "rgba.png": [16], "palette.png": [16], "photo.jpg": [16, 40],
             "gray.jpg": [16], "large.png": [64, 100]}
    for name, im in images.items():
        path = os.path.join(out, "img_" + name)
        if name.endswith(".jpg"):
            im.save(path, quality=90)
        else:
            im.save(path, optimize=True)
        rgb = Image.open(path).convert("RGB")
        stem = "img_" + name.replace(".", "_")
        if name != "large.png":   # (its decode is checked through the crops)
            np.save(os.path.join(out, stem + "_rgb.npy"), np.array(rgb))
        for size in crops[name]:
            np.save(os.path.join(out, "%s_crop%d.npy" % (stem, size)), vae_ref.center_crop_arr(rgb, size))


README = """# tests/golden/vae

Made by `/usr/bin/python3 tests/ref/make_vae_golden.py` (torch %s, numpy %s, PIL %s); regenerate only on
purpose. What each file holds: see the docstring of that script. The float goldens are computed in float64
from float32 weights and inputs, then stored as float32.
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "vae"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    small_goldens(args.out)
    block_goldens(args.out)
    layout_fixtures(args.out)
    image_fixtures(args.out)
    import PIL
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write(README % (torch.__version__, np.__version__, PIL.__version__))


if __name__ == "__main__":
    main()
