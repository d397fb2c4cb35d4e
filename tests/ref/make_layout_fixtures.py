#!/usr/bin/python3
"""Write tests/golden/layouts/: the "micro" DiT config (tests/ref/make_dit_golden.py) saved in every
checkpoint layout the C loader accepts, plus golden outputs for the reduced-precision files.

    /usr/bin/python3 tests/ref/make_layout_fixtures.py [--out tests/golden/layouts]

Needs tests/golden/dit/micro_{x,t,y,out}.npy (run make_dit_golden.py first).
"""
import argparse
import copy
import json
import os
import struct
import sys
from collections import OrderedDict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dit_ref  # noqa: E402
from make_dit_golden import CONFIGS, config_dict, build_synthetic  # noqa: E402

NAME = "micro"        # the config of make_dit_golden.CONFIGS these files hold (small: 56,000 values)
SEED = 6              # its weight seed (= the seed of tests/golden/dit/micro_out.npy)
OTHER_SEED = 11       # the "model" (non-EMA) weights of the train.py checkpoint

ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32"}
ST_TORCH = {v: k for k, v in ST_DTYPES.items()}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def save_safetensors(path, tensors, metadata=None):
    """safetensors: u64 LE header length, JSON header (padded with spaces to a multiple of 8), data.
    Tensors are stored in the given order, C-contiguous little-endian."""
    header = OrderedDict()
    if metadata is not None:
        header["__metadata__"] = metadata
    blobs, off = [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(hj)))
        fh.write(hj)
        for b in blobs:
            fh.write(b)


def load_safetensors(path):
    """Our own reader (for the round-trip check): OrderedDict name -> torch tensor, metadata."""
    with open(path, "rb") as fh:
        data = fh.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    meta = header.pop("__metadata__", None)
    base = 8 + n
    out = OrderedDict()
    for name, e in header.items():
        a, b = e["data_offsets"]
        raw = data[base + a:base + b]
        dt = ST_TORCH[e["dtype"]]
        if dt == torch.bfloat16:
            t = torch.from_numpy(np.frombuffer(raw, dtype="<i2").copy()).view(torch.bfloat16)
        else:
            np_dt = torch.empty(0, dtype=dt).numpy().dtype.newbyteorder("<")
            t = torch.from_numpy(np.frombuffer(raw, dtype=np_dt).astype(np_dt.newbyteorder("=")))
        out[name] = t.reshape(e["shape"])
    return out, meta


def to_diffusers(sd, depth):
    """Official -> diffusers DiTTransformer2DModel keys (reference.md §4.2). t/y embedders are copied
    into every block; qkv is split with torch.chunk(3, dim=0); pos_embed is not written."""
    out = OrderedDict()
    out["pos_embed.proj.weight"] = sd["x_embedder.proj.weight"]
    out["pos_embed.proj.bias"] = sd["x_embedder.proj.bias"]
    for n in range(depth):
        b, d = "blocks.%d." % n, "transformer_blocks.%d." % n
        out[d + "norm1.emb.timestep_embedder.linear_1.weight"] = sd["t_embedder.mlp.0.weight"]
        out[d + "norm1.emb.timestep_embedder.linear_1.bias"] = sd["t_embedder.mlp.0.bias"]
        out[d + "norm1.emb.timestep_embedder.linear_2.weight"] = sd["t_embedder.mlp.2.weight"]
        out[d + "norm1.emb.timestep_embedder.linear_2.bias"] = sd["t_embedder.mlp.2.bias"]
        out[d + "norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
        out[d + "norm1.linear.weight"] = sd[b + "adaLN_modulation.1.weight"]
        out[d + "norm1.linear.bias"] = sd[b + "adaLN_modulation.1.bias"]
        qw = torch.chunk(sd[b + "attn.qkv.weight"], 3, dim=0)
        qb = torch.chunk(sd[b + "attn.qkv.bias"], 3, dim=0)
        for j, nm in enumerate(["to_q", "to_k", "to_v"]):
            out[d + "attn1.%s.weight" % nm] = qw[j].clone()
            out[d + "attn1.%s.bias" % nm] = qb[j].clone()
        out[d + "attn1.to_out.0.weight"] = sd[b + "attn.proj.weight"]
        out[d + "attn1.to_out.0.bias"] = sd[b + "attn.proj.bias"]
        out[d + "ff.net.0.proj.weight"] = sd[b + "mlp.fc1.weight"]
        out[d + "ff.net.0.proj.bias"] = sd[b + "mlp.fc1.bias"]
        out[d + "ff.net.2.weight"] = sd[b + "mlp.fc2.weight"]
        out[d + "ff.net.2.bias"] = sd[b + "mlp.fc2.bias"]
    out["proj_out_1.weight"] = sd["final_layer.adaLN_modulation.1.weight"]
    out["proj_out_1.bias"] = sd["final_layer.adaLN_modulation.1.bias"]
    out["proj_out_2.weight"] = sd["final_layer.linear.weight"]
    out["proj_out_2.bias"] = sd["final_layer.linear.bias"]
    return out


def from_diffusers(dd, pos_embed, depth):
    """Inverse mapping (what the C loader does), for the round-trip check."""
    sd = OrderedDict()
    sd["pos_embed"] = pos_embed
    sd["x_embedder.proj.weight"] = dd["pos_embed.proj.weight"]
    sd["x_embedder.proj.bias"] = dd["pos_embed.proj.bias"]
    e = "transformer_blocks.0.norm1.emb."
    sd["t_embedder.mlp.0.weight"] = dd[e + "timestep_embedder.linear_1.weight"]
    sd["t_embedder.mlp.0.bias"] = dd[e + "timestep_embedder.linear_1.bias"]
    sd["t_embedder.mlp.2.weight"] = dd[e + "timestep_embedder.linear_2.weight"]
    sd["t_embedder.mlp.2.bias"] = dd[e + "timestep_embedder.linear_2.bias"]
    sd["y_embedder.embedding_table.weight"] = dd[e + "class_embedder.embedding_table.weight"]
    for n in range(depth):
        b, d = "blocks.%d." % n, "transformer_blocks.%d." % n
        sd[b + "attn.qkv.weight"] = torch.cat([dd[d + "attn1.%s.weight" % q] for q in ("to_q", "to_k", "to_v")])
        sd[b + "attn.qkv.bias"] = torch.cat([dd[d + "attn1.%s.bias" % q] for q in ("to_q", "to_k", "to_v")])
        sd[b + "attn.proj.weight"] = dd[d + "attn1.to_out.0.weight"]
        sd[b + "attn.proj.bias"] = dd[d + "attn1.to_out.0.bias"]
        sd[b + "mlp.fc1.weight"] = dd[d + "ff.net.0.proj.weight"]
        sd[b + "mlp.fc1.bias"] = dd[d + "ff.net.0.proj.bias"]
        sd[b + "mlp.fc2.weight"] = dd[d + "ff.net.2.weight"]
        sd[b + "mlp.fc2.bias"] = dd[d + "ff.net.2.bias"]
        sd[b + "adaLN_modulation.1.weight"] = dd[d + "norm1.linear.weight"]
        sd[b + "adaLN_modulation.1.bias"] = dd[d + "norm1.linear.bias"]
    sd["final_layer.linear.weight"] = dd["proj_out_2.weight"]
    sd["final_layer.linear.bias"] = dd["proj_out_2.bias"]
    sd["final_layer.adaLN_modulation.1.weight"] = dd["proj_out_1.weight"]
    sd["final_layer.adaLN_modulation.1.bias"] = dd["proj_out_1.bias"]
    return sd


def diffusers_config(cfg):
    """What a diffusers transformer/config.json for this model would say (reference.md §4.1)."""
    return OrderedDict(_class_name="DiTTransformer2DModel", num_attention_heads=cfg["num_heads"],
                       attention_head_dim=cfg["hidden_size"] // cfg["num_heads"],
                       in_channels=cfg["in_channels"], out_channels=dit_ref.out_channels(cfg),
                       num_layers=cfg["depth"], dropout=0.0, norm_num_groups=32, attention_bias=True,
                       sample_size=cfg["input_size"], patch_size=cfg["patch_size"],
                       activation_fn="gelu-approximate", num_embeds_ada_norm=cfg["num_classes"],
                       upcast_attention=False, norm_type="ada_norm_zero", norm_elementwise_affine=False,
                       norm_eps=1e-5)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(here, "..", "golden", "layouts"))
    ap.add_argument("--dit-golden", default=os.path.join(here, "..", "golden", "dit"))
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    gd = os.path.normpath(args.dit_golden)

    name, cfg, B, seed = config_dict([r for r in CONFIGS if r[0] == NAME][0])
    assert seed == SEED and OTHER_SEED != SEED
    m1 = build_synthetic(cfg, SEED)
    m5 = build_synthetic(cfg, OTHER_SEED)
    sd1 = m1.state_dict()
    x = np.load(os.path.join(gd, name + "_x.npy"))
    t = np.load(os.path.join(gd, name + "_t.npy"))
    y = np.load(os.path.join(gd, name + "_y.npy"))
    want = np.load(os.path.join(gd, name + "_out.npy"))

    def fwd(sd):
        m = dit_ref.build(cfg, init="none").eval()
        m.load_state_dict(OrderedDict((k, v.float()) for k, v in sd.items()), strict=True)
        with torch.no_grad():
            return m(torch.from_numpy(x), torch.from_numpy(t).float(), torch.from_numpy(y)).numpy()

    assert np.array_equal(fwd(sd1), want), "%s weights do not reproduce %s_out.npy" % (name, name)
    log = []

    # (a) official raw state_dict
    p = os.path.join(out, name + "_official.pt")
    torch.save(sd1, p)
    back = torch.load(p)
    assert list(back) == list(sd1) and all(torch.equal(back[k], sd1[k]) for k in sd1)
    log.append("%s_official.pt: raw state_dict, %d tensors, float32" % (name, len(sd1)))

    # (b) train.py checkpoint: model = OTHER_SEED weights, ema = SEED weights, opt = AdamW after one step, args
    import argparse as _ap
    train_model = copy.deepcopy(m5).train()
    opt = torch.optim.AdamW(train_model.parameters(), lr=1e-4, weight_decay=0)
    rng = np.random.default_rng(OTHER_SEED)
    S, C = cfg["input_size"], cfg["in_channels"]
    xb = torch.from_numpy(rng.standard_normal((2, C, S, S), dtype=np.float32))
    tb = torch.from_numpy(rng.integers(0, 1000, 2)).float()
    yb = torch.from_numpy(rng.integers(0, cfg["num_classes"], 2))
    loss = (train_model(xb, tb, yb) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    ckpt = {"model": m5.state_dict(), "ema": sd1, "opt": opt.state_dict(),
            "args": _ap.Namespace(model="DiT-custom")}
    p = os.path.join(out, name + "_trainpy.pt")
    torch.save(ckpt, p)
    back = torch.load(p)
    assert all(torch.equal(back["ema"][k], sd1[k]) for k in sd1)
    assert not torch.equal(back["model"]["x_embedder.proj.weight"], sd1["x_embedder.proj.weight"])
    log.append("%s_trainpy.pt: {model: seed-%d weights, ema: seed-%d weights (= %s), opt: AdamW "
               "state after one step (%d param states), args: Namespace(model='DiT-custom')}"
               % (name, OTHER_SEED, SEED, name, len(back["opt"]["state"])))

    # (c) safetensors, official keys, F32
    p = os.path.join(out, name + "_official.safetensors")
    save_safetensors(p, sd1, metadata={"format": "pt"})
    back, meta = load_safetensors(p)
    assert list(back) == list(sd1) and all(torch.equal(back[k], sd1[k]) for k in sd1)
    log.append("%s_official.safetensors: official keys and order, F32, pos_embed included, "
               "__metadata__ {\"format\": \"pt\"}" % name)

    # (d) F16 / BF16 (every tensor, pos_embed included); goldens with the rounded weights
    for tag, dt in [("f16", torch.float16), ("bf16", torch.bfloat16)]:
        sdr = OrderedDict((k, v.to(dt)) for k, v in sd1.items())
        p = os.path.join(out, "%s_%s.safetensors" % (name, tag))
        save_safetensors(p, sdr, metadata={"format": "pt"})
        back, _ = load_safetensors(p)
        assert all(back[k].dtype == dt and torch.equal(back[k], sdr[k]) for k in sdr)
        o = fwd(sdr)                                   # file values (pos_embed rounded too), float32 math
        np.save(os.path.join(out, "%s_%s_out.npy" % (name, tag)), o)
        # the same but with the exact float32 pos_embed (a loader that recomputes it)
        sdr2 = OrderedDict(sdr); sdr2["pos_embed"] = sd1["pos_embed"]
        o2 = fwd(sdr2)
        log.append("{n}_{tag}.safetensors: all tensors {dt} (round to nearest even from the F32 weights); "
                   "{n}_{tag}_out.npy = forward on {n}_{{x,t,y}} with these values widened to float32, "
                   "pos_embed as stored (rounded). max|out - {n}_out| = {d1:.3g}; using the exact "
                   "pos_embed instead changes the output by up to {d2:.3g}".format(
                       n=name, tag=tag, dt=ST_DTYPES[dt], d1=maxabs(o, want), d2=maxabs(o, o2)))

    # (e) diffusers layout
    dd = to_diffusers(sd1, cfg["depth"])
    p = os.path.join(out, name + "_diffusers.safetensors")
    save_safetensors(p, dd, metadata={"format": "pt"})
    with open(os.path.join(out, name + "_diffusers_config.json"), "w") as fh:
        json.dump(diffusers_config(cfg), fh, indent=1)
        fh.write("\n")
    back, _ = load_safetensors(p)
    sdb = from_diffusers(back, sd1["pos_embed"], cfg["depth"])
    assert list(sdb) == list(sd1) and all(torch.equal(sdb[k], sd1[k]) for k in sd1)
    assert np.array_equal(fwd(sdb), want)
    log.append("{n}_diffusers.safetensors: diffusers DiTTransformer2DModel keys ({k} tensors, F32, no "
               "pos_embed); mapped back it equals {n}_official exactly, so the golden is "
               "tests/golden/dit/{n}_out.npy (official numerics). {n}_diffusers_config.json: the "
               "matching diffusers config (num_attention_heads {h})".format(
                   n=name, k=len(dd), h=cfg["num_heads"]))

    sizes = {f: os.path.getsize(os.path.join(out, f)) for f in sorted(os.listdir(out)) if f != "README.md"}
    for line in log:
        print(line)
    for f, s in sizes.items():
        print("%10d  %s" % (s, f))
    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write(README.format(name=name, S=cfg["input_size"], p=cfg["patch_size"], C=cfg["in_channels"],
                               D=cfg["hidden_size"], depth=cfg["depth"], H=cfg["num_heads"],
                               ncls=cfg["num_classes"], values=sum(v.numel() for v in sd1.values()),
                               ntensors=len(sd1), seed=SEED,
                               items="\n".join("- " + l for l in log),
                               sizes="\n".join("%10d  %s" % (s, f) for f, s in sizes.items()),
                               total=sum(sizes.values())))


def maxabs(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


README = """# Checkpoint layout fixtures ("{name}" config)

Made by (after tests/ref/make_dit_golden.py, whose {name} inputs/outputs they use):

    /usr/bin/python3 tests/ref/make_layout_fixtures.py

The model is the "{name}" config of tests/golden/dit/configs.json (input {S}, patch {p}, in_ch {C}, hidden {D},
depth {depth}, heads {H}, {ncls} classes + null row, learn_sigma; {values:,} values, {ntensors} tensors) with synthetic
weights seed {seed} (docs/testing.md); pos_embed = computed sin-cos rounded to float32. Every file except the
F16/BF16 ones must give exactly the model of tests/golden/dit/{name}_out.npy (inputs {name}_x/t/y.npy there).
Hidden size {D} is not a named DiT width, so the C loader needs the head count from the caller (--heads {H});
diffusers files have no pos_embed, so they also need the input size (--image-size {S}).
The safetensors files are written by our own writer (u64 LE header size, JSON header padded with
spaces to a multiple of 8, C-order little-endian data in the listed order).

{items}

Note on F16/BF16 and pos_embed: the golden uses pos_embed as stored in the file (rounded), which is what
PyTorch's load_state_dict would do. A loader that recomputes pos_embed instead differs by the amount
quoted above.

Sizes (bytes):
```
{sizes}
```
total {total} bytes.
"""

if __name__ == "__main__":
    main()
