#!/usr/bin/python3
"""Our PyTorch reference of the SD KL-f8 AutoencoderKL (reference.md §4.4), written from the facts
there (diffusers is not installed): module names and registration order as diffusers' AutoencoderKL, so
state_dict() keys and order equal dit's parameter table (src/models/vae.c).

Also: the seeded synthetic weights (docs/vae.md: docs/testing.md's hash; GroupNorm gamma 1 + 0.1u),
key conversion to the older diffusers attention names and to the CompVis/ldm layout, and the ADM
center_crop_arr (reference.md §3.1).

    /usr/bin/python3 tests/ref/vae_ref.py --selfcheck
"""
import math
import sys
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(__file__)))
from synthetic import synthetic_u  # noqa: E402

SD_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=4, block_out=(128, 256, 512, 512),
                 layers_per_block=2, norm_groups=32)
SCALING_FACTOR = 0.18215


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6, affine=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6, affine=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))   # dropout 0
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Attention(nn.Module):
    """diffusers Attention(heads=1, dim_head=C, norm_num_groups, residual_connection, bias)."""

    def __init__(self, C, groups):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, C, eps=1e-6, affine=True)
        self.to_q = nn.Linear(C, C)
        self.to_k = nn.Linear(C, C)
        self.to_v = nn.Linear(C, C)
        self.to_out = nn.ModuleList([nn.Linear(C, C), nn.Dropout(0.0)])

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x).view(B, C, H * W).transpose(1, 2)    # (B, T, C)
        q, k, v = self.to_q(h), self.to_k(h), self.to_v(h)
        scores = torch.bmm(q, k.transpose(1, 2)) * (1.0 / math.sqrt(C))
        p = scores.softmax(dim=-1)
        o = self.to_out[0](torch.bmm(p, v))
        return o.transpose(1, 2).reshape(B, C, H, W) + x


class MidBlock(nn.Module):
    def __init__(self, C, groups):
        super().__init__()
        # UNetMidBlock2D assigns attentions before resnets: they come first in the state_dict.
        self.attentions = nn.ModuleList([Attention(C, groups)])
        self.resnets = nn.ModuleList([ResnetBlock2D(C, C, groups), ResnetBlock2D(C, C, groups)])

    def forward(self, x):
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        return self.resnets[1](x)


class Downsample(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.conv = nn.Conv2d(C, C, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))    # right and bottom by one


class Upsample(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.conv = nn.Conv2d(C, C, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DownBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, downsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, groups) for j in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample(cout)]) if downsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpBlock(nn.Module):
    def __init__(self, cin, cout, layers, groups, upsample):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if j == 0 else cout, cout, groups) for j in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample(cout)]) if upsample else None

    def forward(self, x):
        for r in self.resnets:
            x = r(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        bo, L, G = c["block_out"], len(c["block_out"]), c["norm_groups"]
        self.conv_in = nn.Conv2d(c["in_channels"], bo[0], 3, 1, 1)
        self.down_blocks = nn.ModuleList([])
        out = bo[0]
        for i in range(L):
            cin, out = out, bo[i]
            self.down_blocks.append(DownBlock(cin, out, c["layers_per_block"], G, i < L - 1))
        self.mid_block = MidBlock(bo[-1], G)
        self.conv_norm_out = nn.GroupNorm(G, bo[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(bo[-1], 2 * c["latent_channels"], 3, 1, 1)

    def forward(self, x):
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        bo, L, G = c["block_out"], len(c["block_out"]), c["norm_groups"]
        self.conv_in = nn.Conv2d(c["latent_channels"], bo[-1], 3, 1, 1)
        self.up_blocks = nn.ModuleList([])      # assigned before mid_block in diffusers' Decoder
        self.mid_block = MidBlock(bo[-1], G)
        rev = list(reversed(bo))
        out = rev[0]
        for i in range(L):
            cin, out = out, rev[i]
            self.up_blocks.append(UpBlock(cin, out, c["layers_per_block"] + 1, G, i < L - 1))
        self.conv_norm_out = nn.GroupNorm(G, bo[0], eps=1e-6)
        self.conv_out = nn.Conv2d(bo[0], c["out_channels"], 3, 1, 1)

    def forward(self, z):
        x = self.conv_in(z)
        x = self.mid_block(x)
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(nn.Module):
    def __init__(self, **config):
        super().__init__()
        c = dict(SD_CONFIG)
        c.update(config)
        self.config = c
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quant_conv = nn.Conv2d(2 * c["latent_channels"], 2 * c["latent_channels"], 1)
        self.post_quant_conv = nn.Conv2d(c["latent_channels"], c["latent_channels"], 1)

    def encode_moments(self, x):
        """[mean | logvar] with logvar clamped to [-30, 20] (DiagonalGaussianDistribution)."""
        m = self.quant_conv(self.encoder(x))
        mean, logvar = torch.chunk(m, 2, dim=1)
        return torch.cat([mean, logvar.clamp(-30.0, 20.0)], dim=1)

    def sample(self, moments, noise=None):
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean if noise is None else mean + torch.exp(0.5 * logvar) * noise

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ---- synthetic weights (docs/vae.md) -------------------------------------------------------------

def synthetic_tensor(name, shape, k, seed):
    n = int(np.prod(shape))
    u = synthetic_u(n, k, seed)
    if len(shape) >= 2:
        v = (np.float32(1.0) / np.sqrt(np.float32(n // shape[0]))) * u
    else:
        v = np.float32(0.1) * u
        if "norm" in name and name.endswith(".weight"):
            v = np.float32(1.0) + v
    assert v.dtype == np.float32
    return v.reshape(shape)


def synthetic_state_dict(module, seed):
    return OrderedDict((name, synthetic_tensor(name, tuple(t.shape), k, seed))
                       for k, (name, t) in enumerate(module.state_dict().items()))


def fill_synthetic(module, seed):
    sd = synthetic_state_dict(module, seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            t.copy_(torch.from_numpy(sd[name]).to(t.dtype))
    return module


# ---- layouts -------------------------------------------------------------------------------------

def to_old_attention_names(sd):
    """diffusers <= 0.14 spelling of the mid-block attention (query/key/value/proj_attn)."""
    out = OrderedDict()
    for k, v in sd.items():
        for new, old in ((".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")):
            if ".attentions.0" + new in k:
                k = k.replace(".attentions.0" + new, ".attentions.0" + old)
        out[k] = v
    return out


def to_compvis(sd, levels):
    """The ldm (CompVis) names of diffusers keys: the inverse of convert_ldm_vae_checkpoint. Attention
    q/k/v/proj_out become 1x1 conv weights [C, C, 1, 1]."""
    import re
    out = OrderedDict()
    for k, v in sd.items():
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$", k)
        if m:
            part = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}[m.group(2)]
            k = "%s.mid.attn_1.%s.%s" % (m.group(1), part, m.group(3))
            if v.ndim == 2:
                v = v.reshape(v.shape + (1, 1))
            out[k] = v
            continue
        k = k.replace("conv_shortcut", "nin_shortcut")
        m = re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", k)
        if m:
            k = "encoder.down.%s.block.%s.%s" % m.groups()
        m = re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.*)$", k)
        if m:
            k = "encoder.down.%s.downsample.%s" % m.groups()
        m = re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$", k)
        if m:
            k = "decoder.up.%d.block.%s.%s" % (levels - 1 - int(m.group(1)), m.group(2), m.group(3))
        m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.*)$", k)
        if m:
            k = "decoder.up.%d.upsample.%s" % (levels - 1 - int(m.group(1)), m.group(2))
        m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.*)$", k)
        if m:
            k = "%s.mid.block_%d.%s" % (m.group(1), int(m.group(2)) + 1, m.group(3))
        k = k.replace("conv_norm_out", "norm_out")
        out[k] = v
    return out


# ---- ADM center_crop_arr (guided_diffusion/image_datasets.py, DiT train.py) ----------------------

def center_crop_arr(pil_image, image_size):
    from PIL import Image
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y: crop_y + image_size, crop_x: crop_x + image_size]


if __name__ == "__main__":
    if "--selfcheck" in sys.argv:
        m = AutoencoderKL(block_out=(32, 32, 64, 64))
        names = list(m.state_dict().keys())
        assert names[0] == "encoder.conv_in.weight" and names[-1] == "post_quant_conv.bias", names[-1]
        fill_synthetic(m, 1)
        x = torch.rand(1, 3, 32, 32) * 2 - 1
        with torch.no_grad():
            mo = m.encode_moments(x)
            y = m.decode(m.sample(mo))
        print("params", sum(t.numel() for t in m.state_dict().values()), "moments", tuple(mo.shape), "out", tuple(y.shape))
        sd = synthetic_state_dict(m, 1)
        cv = to_compvis(sd, 4)
        assert len(cv) == len(sd) and "decoder.up.3.upsample.conv.weight" in cv and "encoder.mid.attn_1.q.weight" in cv
        print("selfcheck ok")
