#!/usr/bin/python3
"""PyTorch reference of facebookresearch/DiT models.py, written from the facts in
docs/reference.md section 1 (not copied from the original code).

Module and parameter names equal the official state_dict keys, and state_dict() order equals the
official order (pos_embed first; final_layer.linear before final_layer.adaLN_modulation).

Only evaluation semantics are implemented (no label dropout at eval, no training code).
Attention is computed explicitly (q*scale @ k^T, softmax, @ v), GELU is the tanh approximation.

Run `python3 tests/ref/dit_ref.py --selfcheck` for the built-in checks (parameter counts of the 12
named configs, 675,129,632 for DiT-XL/2 at 256 px, pos_embed spot checks, zero output at the
official initialisation, state_dict key order).
"""
import math
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn

# ----------------------------------------------------------------------------------------------
# configurations
# ----------------------------------------------------------------------------------------------

# name -> (depth, hidden_size, patch_size, num_heads)
NAMED_CONFIGS = OrderedDict([
    ("DiT-XL/2", (28, 1152, 2, 16)), ("DiT-XL/4", (28, 1152, 4, 16)), ("DiT-XL/8", (28, 1152, 8, 16)),
    ("DiT-L/2", (24, 1024, 2, 16)), ("DiT-L/4", (24, 1024, 4, 16)), ("DiT-L/8", (24, 1024, 8, 16)),
    ("DiT-B/2", (12, 768, 2, 12)), ("DiT-B/4", (12, 768, 4, 12)), ("DiT-B/8", (12, 768, 8, 12)),
    ("DiT-S/2", (12, 384, 2, 6)), ("DiT-S/4", (12, 384, 4, 6)), ("DiT-S/8", (12, 384, 8, 6)),
])

DEFAULT_CONFIG = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                      num_heads=16, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000,
                      learn_sigma=True, block="adaln-zero")

# The block designs of the paper's Fig. 5 (reference.md §1.13); adaLN-Zero is the published model.
BLOCKS = ("adaln-zero", "adaln", "cross-attention", "in-context")


def adaptive(cfg):
    return cfg["block"] in ("adaln-zero", "adaln")


def named_config(name, image_size=256, **overrides):
    """Config dict of one of the 12 paper models at an image size (latent = image_size // 8)."""
    depth, hidden, patch, heads = NAMED_CONFIGS[name]
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(input_size=image_size // 8, patch_size=patch, hidden_size=hidden, depth=depth,
               num_heads=heads)
    cfg.update(overrides)
    return cfg


def full_config(**kw):
    cfg = dict(DEFAULT_CONFIG)
    unknown = set(kw) - set(cfg)
    if unknown:
        raise ValueError("unknown config fields %s" % sorted(unknown))
    cfg.update(kw)
    return cfg


def out_channels(cfg):
    return cfg["in_channels"] * 2 if cfg["learn_sigma"] else cfg["in_channels"]


def num_tokens(cfg):
    return (cfg["input_size"] // cfg["patch_size"]) ** 2


def null_class(cfg):
    """Index of the null ('unconditional') label row, or None when the table has no such row."""
    return cfg["num_classes"] if cfg["class_dropout_prob"] > 0 else None


def param_shapes(cfg):
    """[(key, shape)] in the official state_dict order, computed from the config alone."""
    cfg = full_config(**cfg)
    D, C, p = cfg["hidden_size"], cfg["in_channels"], cfg["patch_size"]
    T = num_tokens(cfg)
    M = int(D * cfg["mlp_ratio"])
    rows = cfg["num_classes"] + (1 if cfg["class_dropout_prob"] > 0 else 0)
    oc = out_channels(cfg)
    s = [("pos_embed", (1, T, D)),
         ("x_embedder.proj.weight", (D, C, p, p)), ("x_embedder.proj.bias", (D,)),
         ("t_embedder.mlp.0.weight", (D, 256)), ("t_embedder.mlp.0.bias", (D,)),
         ("t_embedder.mlp.2.weight", (D, D)), ("t_embedder.mlp.2.bias", (D,)),
         ("y_embedder.embedding_table.weight", (rows, D))]
    chunks = 4 if cfg["block"] == "adaln" else 6
    for n in range(cfg["depth"]):
        b = "blocks.%d." % n
        attn = [(b + "attn.qkv.weight", (3 * D, D)), (b + "attn.qkv.bias", (3 * D,)),
                (b + "attn.proj.weight", (D, D)), (b + "attn.proj.bias", (D,))]
        mlp = [(b + "mlp.fc1.weight", (M, D)), (b + "mlp.fc1.bias", (M,)),
               (b + "mlp.fc2.weight", (D, M)), (b + "mlp.fc2.bias", (D,))]
        if adaptive(cfg):
            s += attn + mlp + [(b + "adaLN_modulation.1.weight", (chunks * D, D)),
                               (b + "adaLN_modulation.1.bias", (chunks * D,))]
            continue
        s += [(b + "norm1.weight", (D,)), (b + "norm1.bias", (D,))] + attn
        if cfg["block"] == "cross-attention":
            s += [(b + "norm_cross.weight", (D,)), (b + "norm_cross.bias", (D,)),
                  (b + "cross_attn.q.weight", (D, D)), (b + "cross_attn.q.bias", (D,)),
                  (b + "cross_attn.kv.weight", (2 * D, D)), (b + "cross_attn.kv.bias", (2 * D,)),
                  (b + "cross_attn.proj.weight", (D, D)), (b + "cross_attn.proj.bias", (D,))]
        s += [(b + "norm2.weight", (D,)), (b + "norm2.bias", (D,))] + mlp
    if not adaptive(cfg):
        s += [("final_layer.norm_final.weight", (D,)), ("final_layer.norm_final.bias", (D,))]
    s += [("final_layer.linear.weight", (p * p * oc, D)), ("final_layer.linear.bias", (p * p * oc,))]
    if adaptive(cfg):
        s += [("final_layer.adaLN_modulation.1.weight", (2 * D, D)),
              ("final_layer.adaLN_modulation.1.bias", (2 * D,))]
    return s


def param_count(cfg):
    """Number of parameters including the fixed pos_embed (by formula, no allocation)."""
    return sum(int(np.prod(sh)) for _, sh in param_shapes(cfg))


def gmacs(cfg):
    """Forward multiply-accumulates per sample / 1e9 (the paper's 'Gflops'), reference.md §1.11."""
    cfg = full_config(**cfg)
    D, C, p, T = cfg["hidden_size"], cfg["in_channels"], cfg["patch_size"], num_tokens(cfg)
    M = int(D * cfg["mlp_ratio"])
    Ts = T + 2 if cfg["block"] == "in-context" else T          # in-context: 2 more tokens
    per_block = Ts * (3 * D * D + D * D + 2 * D * M) + 2 * Ts * Ts * D
    per_block += {"adaln-zero": 6 * D * D, "adaln": 4 * D * D, "in-context": 0,
                  # q and proj per image token, k and v of 2 tokens, QK^T and AV over 2 keys
                  "cross-attention": 2 * T * D * D + 2 * 2 * D * D + 2 * T * 2 * D}[cfg["block"]]
    total = (cfg["depth"] * per_block + T * C * p * p * D + T * D * p * p * out_channels(cfg)
             + (2 * D * D if adaptive(cfg) else 0) + 256 * D + D * D)
    return total / 1e9


# ----------------------------------------------------------------------------------------------
# fixed embeddings
# ----------------------------------------------------------------------------------------------

def sincos_1d(embed_dim, pos):
    """[sin(pos*omega) | cos(pos*omega)], omega_k = 10000^(-k/(embed_dim/2)), float64."""
    assert embed_dim % 2 == 0
    k = np.arange(embed_dim // 2, dtype=np.float64)
    omega = 1.0 / 10000 ** (k / (embed_dim / 2.0))
    arg = np.outer(np.asarray(pos, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(arg), np.cos(arg)], axis=1)


def sincos_2d(embed_dim, grid_size):
    """(G*G, embed_dim) float64. Position m = row*G + col. First half encodes the COLUMN index,
    second half the ROW index (reference.md §1.3: meshgrid(grid_w, grid_h) with 'xy' indexing)."""
    assert embed_dim % 2 == 0
    m = np.arange(grid_size * grid_size)
    col = (m % grid_size).astype(np.float64)
    row = (m // grid_size).astype(np.float64)
    return np.concatenate([sincos_1d(embed_dim // 2, col), sincos_1d(embed_dim // 2, row)], axis=1)


def timestep_embedding(t, dim=256, max_period=10000, dtype=torch.float32):
    """GLIDE sinusoidal embedding: [cos(t*f) | sin(t*f)], f_i = exp(-ln(max_period) * i / (dim//2)).
    With dtype=float32 the arithmetic is the official one (float32 freqs, float32 t*f)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=dtype) / half)
    args = t[:, None].to(dtype) * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


# ----------------------------------------------------------------------------------------------
# modules (names = official keys)
# ----------------------------------------------------------------------------------------------

def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_channels, hidden_size, device=None):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size,
                              bias=True, device=device)

    def forward(self, x):                       # (N, C, H, W) -> (N, T, D), token = row*w + col
        return self.proj(x).flatten(2).transpose(1, 2)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, freq_dim=256, device=None):
        super().__init__()
        self.freq_dim = freq_dim
        self.freq_dtype = None   # None: same dtype as the weights; torch.float32 = official arithmetic
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden_size, bias=True, device=device), nn.SiLU(),
                                 nn.Linear(hidden_size, hidden_size, bias=True, device=device))

    def forward(self, t):
        wdt = self.mlp[0].weight.dtype
        f = timestep_embedding(t, self.freq_dim, dtype=self.freq_dtype or wdt).to(wdt)
        return self.mlp(f)


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, hidden_size, dropout_prob, device=None):
        super().__init__()
        extra = 1 if dropout_prob > 0 else 0
        self.embedding_table = nn.Embedding(num_classes + extra, hidden_size, device=device)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def forward(self, labels):                  # evaluation: no label dropout
        return self.embedding_table(labels)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, device=None):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True, device=device)
        self.proj = nn.Linear(dim, dim, bias=True, device=device)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                       # (B, H, N, hd)
        attn = (q * self.scale) @ k.transpose(-2, -1)          # (B, H, N, N)
        attn = attn.softmax(dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(o)


class Mlp(nn.Module):
    def __init__(self, dim, hidden, device=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=True, device=device)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim, bias=True, device=device)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, device=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, device=device)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), device=device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                              nn.Linear(hidden_size, 6 * hidden_size, bias=True,
                                                        device=device))

    def forward(self, x, c):
        sh_msa, sc_msa, g_msa, sh_mlp, sc_mlp, g_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), sh_msa, sc_msa))
        x = x + g_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), sh_mlp, sc_mlp))
        return x


class AdaLNBlock(nn.Module):
    """adaLN without the gates (§1.13): shift and scale regressed from c, residuals added as they are."""
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, device=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, device=device)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), device=device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                              nn.Linear(hidden_size, 4 * hidden_size, bias=True,
                                                        device=device))

    def forward(self, x, c):
        sh_msa, sc_msa, sh_mlp, sc_mlp = self.adaLN_modulation(c).chunk(4, dim=1)
        x = x + self.attn(modulate(self.norm1(x), sh_msa, sc_msa))
        x = x + self.mlp(modulate(self.norm2(x), sh_mlp, sc_mlp))
        return x


class CrossAttention(nn.Module):
    """Multi-head attention from the image tokens (queries) to a context sequence (keys, values)."""
    def __init__(self, dim, num_heads, device=None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.q = nn.Linear(dim, dim, bias=True, device=device)
        self.kv = nn.Linear(dim, 2 * dim, bias=True, device=device)
        self.proj = nn.Linear(dim, dim, bias=True, device=device)

    def forward(self, x, ctx):
        B, N, D = x.shape
        S = ctx.shape[1]
        q = self.q(x).reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)     # (B, H, N, hd)
        kv = self.kv(ctx).reshape(B, S, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]                                                            # (B, H, S, hd)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)                # (B, H, N, S)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, D))


class PlainBlock(nn.Module):
    """A standard pre-norm ViT block (LayerNorm with its affine, eps 1e-6), with a cross-attention layer
    after the self-attention for the cross-attention design (§1.13)."""
    def __init__(self, hidden_size, num_heads, mlp_ratio=4.0, cross=False, device=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6, device=device)
        self.attn = Attention(hidden_size, num_heads, device=device)
        if cross:
            self.norm_cross = nn.LayerNorm(hidden_size, eps=1e-6, device=device)
            self.cross_attn = CrossAttention(hidden_size, num_heads, device=device)
        self.cross = cross
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6, device=device)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio), device=device)

    def forward(self, x, ctx=None):
        x = x + self.attn(self.norm1(x))
        if self.cross:
            x = x + self.cross_attn(self.norm_cross(x), ctx)
        return x + self.mlp(self.norm2(x))


class PlainFinalLayer(nn.Module):
    """The final layer of the plain designs: LayerNorm with its affine (not adaptive), linear decoder."""
    def __init__(self, hidden_size, patch_size, out_channels, device=None):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, eps=1e-6, device=device)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True,
                                device=device)

    def forward(self, x):
        return self.linear(self.norm_final(x))


class FinalLayer(nn.Module):
    def __init__(self, hidden_size, patch_size, out_channels, device=None):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True,
                                device=device)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(),
                                              nn.Linear(hidden_size, 2 * hidden_size, bias=True,
                                                        device=device))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28,
                 num_heads=16, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000,
                 learn_sigma=True, block="adaln-zero", device=None, init="official"):
        super().__init__()
        assert input_size % patch_size == 0
        self.cfg = full_config(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                               hidden_size=hidden_size, depth=depth, num_heads=num_heads,
                               mlp_ratio=mlp_ratio, class_dropout_prob=class_dropout_prob,
                               num_classes=num_classes, learn_sigma=learn_sigma, block=block)
        assert block in BLOCKS, block
        self.block = block
        self.in_channels = in_channels
        self.out_channels = out_channels(self.cfg)
        self.patch_size = patch_size
        self.num_heads = num_heads
        T = num_tokens(self.cfg)
        # Registration order: pos_embed (own parameter) is listed first in state_dict(), then the
        # submodules in the order below.
        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size, device=device)
        self.t_embedder = TimestepEmbedder(hidden_size, device=device)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob, device=device)
        self.pos_embed = nn.Parameter(torch.zeros(1, T, hidden_size, device=device),
                                      requires_grad=False)
        def make_block():
            if block == "adaln-zero":
                return DiTBlock(hidden_size, num_heads, mlp_ratio, device=device)
            if block == "adaln":
                return AdaLNBlock(hidden_size, num_heads, mlp_ratio, device=device)
            return PlainBlock(hidden_size, num_heads, mlp_ratio, cross=block == "cross-attention",
                              device=device)
        self.blocks = nn.ModuleList([make_block() for _ in range(depth)])
        final = FinalLayer if adaptive(self.cfg) else PlainFinalLayer
        self.final_layer = final(hidden_size, patch_size, self.out_channels, device=device)
        if init == "official" and (device is None or torch.device(device).type != "meta"):
            self.initialize_weights()

    @classmethod
    def from_config(cls, cfg, **kw):
        return cls(**full_config(**cfg), **kw)

    def compute_pos_embed(self):
        G = int(round(self.pos_embed.shape[1] ** 0.5))
        return sincos_2d(self.pos_embed.shape[-1], G)          # float64

    def reset_pos_embed(self):
        with torch.no_grad():
            pe = torch.from_numpy(self.compute_pos_embed()).to(self.pos_embed.dtype).unsqueeze(0)
            self.pos_embed.copy_(pe)

    def initialize_weights(self):
        """The official initialisation (§1.9); outputs are exactly 0 afterwards. The other designs
        (§1.13): LayerNorm affines 1 and 0 (PyTorch's default), cross-attention linears xavier like every
        linear, adaLN's modulation too (no zero init: that is what makes adaLN-Zero), the final linear
        zero in all four."""
        def lin_init(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        self.apply(lin_init)
        self.reset_pos_embed()
        w = self.x_embedder.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for blk in self.blocks:
            if self.block == "adaln-zero":
                nn.init.zeros_(blk.adaLN_modulation[-1].weight)
                nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        fl = self.final_layer
        for lin in (fl.adaLN_modulation[-1], fl.linear) if adaptive(self.cfg) else (fl.linear,):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def unpatchify(self, x):
        """(N, T, p*p*C) -> (N, C, H, W); token vector index (pi*p + qi)*C + c (nhwpqc->nchpwq)."""
        c, p = self.out_channels, self.patch_size
        h = w = int(round(x.shape[1] ** 0.5))
        assert h * w == x.shape[1]
        x = x.reshape(x.shape[0], h, w, p, p, c)
        x = torch.einsum("nhwpqc->nchpwq", x)
        return x.reshape(x.shape[0], c, h * p, w * p)

    def forward(self, x, t, y):
        x = self.x_embedder(x) + self.pos_embed
        t_emb, y_emb = self.t_embedder(t), self.y_embedder(y)
        if adaptive(self.cfg):
            c = t_emb + y_emb
            for blk in self.blocks:
                x = blk(x, c)
            return self.unpatchify(self.final_layer(x, c))
        if self.block == "cross-attention":
            ctx = torch.stack([t_emb, y_emb], dim=1)            # (N, 2, D)
            for blk in self.blocks:
                x = blk(x, ctx)
        else:                                                   # in-context: two more tokens, no pos_embed
            T = x.shape[1]
            x = torch.cat([x, t_emb[:, None], y_emb[:, None]], dim=1)
            for blk in self.blocks:
                x = blk(x)
            x = x[:, :T]                                        # removed after the last block
        return self.unpatchify(self.final_layer(x))

    def forward_with_cfg(self, x, t, y, cfg_scale, guide_all_channels=False):
        """Official semantics (§1.10): x, t, y are the doubled batch [cond; uncond]; the second half
        of x is discarded and replaced by the first; one forward over 2B; guidance on eps channels
        0..2 (official) or 0..in_channels-1 (guide_all_channels); the rest keeps each half's own
        values. Returns the doubled output (the caller keeps the first half)."""
        half = x[: len(x) // 2]
        combined = torch.cat([half, half], dim=0)
        out = self.forward(combined, t, y)
        nch = self.in_channels if guide_all_channels else 3
        eps, rest = out[:, :nch], out[:, nch:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=1)


def build(cfg, **kw):
    return DiT.from_config(cfg, **kw)


# ----------------------------------------------------------------------------------------------
# self check
# ----------------------------------------------------------------------------------------------

# §1.11 table: params incl. pos_embed @256, GMACs @256, GMACs @512
TABLE_1_11 = {
    "DiT-S/8": (33148160, 0.36, 1.43), "DiT-S/4": (32945024, 1.41, 6.07),
    "DiT-S/2": (32963360, 6.06, 31.44), "DiT-B/8": (130881536, 1.42, 5.59),
    "DiT-B/4": (130475648, 5.57, 23.03), "DiT-B/2": (130512416, 23.01, 106.38),
    "DiT-L/8": (458594816, 5.01, 19.73), "DiT-L/4": (458053760, 19.70, 80.74),
    "DiT-L/2": (458102816, 80.70, 360.98), "DiT-XL/8": (675683072, 7.39, 29.09),
    "DiT-XL/4": (675074432, 29.04, 118.66), "DiT-XL/2": (675129632, 118.62, 524.54),
}


def selfcheck():
    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + msg)
        ok = ok and bool(cond)

    # 1. parameter counts and GMACs of the 12 configs (formula) + meta-device instantiation of XL/2
    for name, (want_p, want_g256, want_g512) in TABLE_1_11.items():
        c256, c512 = named_config(name, 256), named_config(name, 512)
        n, g1, g2 = param_count(c256), gmacs(c256), gmacs(c512)
        check(n == want_p and abs(g1 - want_g256) < 0.006 and abs(g2 - want_g512) < 0.006,
              "%-9s params %13s  GMACs@256 %7.2f  @512 %7.2f" % (name, format(n, ","), g1, g2))
    meta = build(named_config("DiT-XL/2", 256), device="meta")
    n_meta = sum(p.numel() for p in meta.state_dict().values())
    print("DiT-XL/2 @ input 32 parameter count (meta-device model, incl. pos_embed): %s"
          % format(n_meta, ","))
    check(n_meta == 675129632, "DiT-XL/2 param count == 675,129,632")
    sd = meta.state_dict()
    shapes = param_shapes(named_config("DiT-XL/2", 256))
    check([(k, tuple(v.shape)) for k, v in sd.items()] == [(k, tuple(s)) for k, s in shapes],
          "state_dict keys/order/shapes == official table (%d tensors)" % len(sd))
    check(len(sd) == 292, "292 tensors for XL/2")
    keys = list(sd)
    check(keys[0] == "pos_embed" and keys[1] == "x_embedder.proj.weight"
          and keys[-4:] == ["final_layer.linear.weight", "final_layer.linear.bias",
                            "final_layer.adaLN_modulation.1.weight",
                            "final_layer.adaLN_modulation.1.bias"], "first/last keys")
    trainable = sum(p.numel() for p in meta.parameters() if p.requires_grad)
    check(trainable == 674834720, "trainable (without pos_embed) = %s" % format(trainable, ","))

    # 2. pos_embed spot checks against §1.3 written out directly
    D, G = 1152, 16
    pe = sincos_2d(D, G)
    errs = []
    for (row, col) in [(0, 0), (0, 1), (1, 0), (3, 7), (15, 15), (9, 2)]:
        m = row * G + col
        for kk in [0, 1, 5, 100, 287]:
            w = 10000.0 ** (-kk / 288.0)
            want = [math.sin(col * w), math.cos(col * w), math.sin(row * w), math.cos(row * w)]
            got = [pe[m, kk], pe[m, 288 + kk], pe[m, 576 + kk], pe[m, 864 + kk]]
            errs.append(max(abs(a - b) for a, b in zip(want, got)))
    check(max(errs) < 1e-12, "pos_embed spot checks (D=1152, G=16): max err %.2e" % max(errs))
    check(pe[1, 0] == math.sin(1.0) and pe[G, 0] == 0.0 and pe[G, 576] == math.sin(1.0),
          "pos_embed: token 1 = (row 0, col 1) uses sin(col) in the first half; token G = row 1")

    # 3. timestep embedding layout: cos first, divisor 128
    te = timestep_embedding(torch.tensor([0.0, 10.0]), 256, dtype=torch.float64)
    want = [math.cos(10.0), math.cos(10.0 * math.exp(-math.log(10000) / 128)), math.sin(10.0)]
    got = [te[1, 0].item(), te[1, 1].item(), te[1, 128].item()]
    check(max(abs(a - b) for a, b in zip(want, got)) < 1e-12 and te[0, 0] == 1 and te[0, 128] == 0,
          "timestep embedding: [cos | sin], freqs exp(-ln(1e4) i/128)")

    # 4. official initialisation -> output exactly 0; state_dict order of a real model
    torch.manual_seed(0)
    cfg = full_config(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                      num_heads=4, num_classes=10)
    m = build(cfg).eval()
    x = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        out = m(x, torch.tensor([1.0, 500.0, 999.0]), torch.tensor([0, 3, 10]))
    check(out.shape == (3, 8, 8, 8) and out.abs().max().item() == 0.0,
          "official init -> zero output, shape %s" % (tuple(out.shape),))
    check([(k, tuple(v.shape)) for k, v in m.state_dict().items()]
          == [(k, tuple(s)) for k, s in param_shapes(cfg)], "tiny: state_dict order == param_shapes")

    # 5. identity-at-init blocks: with zero adaLN, every block returns its input
    with torch.no_grad():
        tok = torch.randn(2, 16, 64)
        c = torch.randn(2, 64)
        check(torch.equal(m.blocks[0](tok, c), tok), "zero adaLN block is the identity")

    # 6. unpatchify / patch layout sanity: index (pi*p+qi)*C + c -> pixel (c, row*p+pi, col*p+qi)
    p, C, h = 2, 8, 4
    v = torch.arange(1 * h * h * p * p * C, dtype=torch.float64).reshape(1, h * h, p * p * C)
    img = m.unpatchify(v)
    row, col, pi, qi, cc = 2, 3, 1, 0, 5
    check(img[0, cc, row * p + pi, col * p + qi].item() == v[0, row * h + col, (pi * p + qi) * C + cc].item(),
          "unpatchify index mapping")

    # 7. the block designs (§1.13): state_dict == param_shapes, zero output at init, XL/2 Gflops of Fig. 5
    fig5 = {"adaln-zero": 118.60, "adaln": 118.56, "cross-attention": 137.62, "in-context": 119.37}
    for blk in BLOCKS:
        bcfg = dict(cfg, block=blk)
        torch.manual_seed(0)
        mb = build(bcfg).eval()
        with torch.no_grad():
            ob = mb(x, torch.tensor([1.0, 500.0, 999.0]), torch.tensor([0, 3, 10]))
        g = gmacs(named_config("DiT-XL/2", 256, block=blk))
        check([(k, tuple(v.shape)) for k, v in mb.state_dict().items()]
              == [(k, tuple(sh)) for k, sh in param_shapes(bcfg)] and ob.abs().max().item() == 0.0
              and abs(g - fig5[blk]) < 0.03,
              "%-15s state_dict == param_shapes (%d params), zero output at init, XL/2 %.2f Gflops "
              "(paper Fig. 5: %.2f)" % (blk, param_count(bcfg), g, fig5[blk]))

    print("selfcheck:", "PASS" if ok else "FAIL")
    return ok


if __name__ == "__main__":
    if "--selfcheck" in sys.argv[1:]:
        sys.exit(0 if selfcheck() else 1)
    print(__doc__)
