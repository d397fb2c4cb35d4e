#!/usr/bin/python3
"""Our PyTorch reference of the FID Inception-v3 (pytorch-fid's fid_inception_v3) and of ADM's evaluator
maths, for tests/golden/eval (tests/ref/make_eval_golden.py). Written from the facts in docs/eval.md:

- torchvision's Inception3(num_classes=1008, aux_logits=False), with the FID patches: Mixed_5b/c/d,
  Mixed_6b..e and Mixed_7b average their 3x3 pool branch without the zero padding (count_include_pad=False);
  Mixed_7c max-pools it instead. BasicConv2d = conv (no bias) + BatchNorm(eps 0.001) + ReLU.
- Input: uint8 NHWC -> p / 255 -> F.interpolate(299, bilinear, align_corners=False) -> 2x - 1.
- Outputs: pool_3 (the 2048-d global average), ADM's spatial features mixed_6/conv[..., :7] = the ReLU output
  of Mixed_6d.branch1x1, first 7 channels, flattened in (h, w, c) order, and logits = pool @ fc.weight^T
  (no bias: ADM's Inception Score multiplies by softmax/logits/MatMul's weight only).
- Synthetic weights: the seeded formula of docs/eval.md (bit-identical to src/models/inception.c).

`python3 tests/ref/inception_ref.py` runs a self-check (key order, output shapes).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import inception as tvi

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from synthetic import synthetic_u  # noqa: E402


def _avg_pool_valid(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FidA(tvi.InceptionA):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_valid(x))
        return torch.cat([b1, b5, b3, bp], 1)


class FidC(tvi.InceptionC):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        bp = self.branch_pool(_avg_pool_valid(x))
        return torch.cat([b1, b7, d, bp], 1)


class FidE(tvi.InceptionE):
    def __init__(self, in_channels, max_pool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x):
        b1 = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg_pool_valid(x)
        return torch.cat([b1, b3, bd, self.branch_pool(pooled)], 1)


def fid_inception():
    net = tvi.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b = FidA(192, pool_features=32)
    net.Mixed_5c = FidA(256, pool_features=64)
    net.Mixed_5d = FidA(288, pool_features=64)
    net.Mixed_6b = FidC(768, channels_7x7=128)
    net.Mixed_6c = FidC(768, channels_7x7=160)
    net.Mixed_6d = FidC(768, channels_7x7=160)
    net.Mixed_6e = FidC(768, channels_7x7=192)
    net.Mixed_7b = FidE(1280, max_pool=False)
    net.Mixed_7c = FidE(2048, max_pool=True)
    return net.eval()


def checkpoint_keys(net):
    """The state_dict keys of a pytorch-fid weight file (no num_batches_tracked), in order."""
    return [(k, tuple(v.shape)) for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")]


def synthetic_value(name, shape, k, seed):
    """docs/eval.md: conv/fc weights sqrtf(6/fan_in) * u; bn.weight 1 + u/4; bn.running_var 1 + u/2; other
    1-D tensors 0.1 u. All float32."""
    u = synthetic_u(int(np.prod(shape)), k, seed)
    if len(shape) >= 2:
        fan_in = np.float32(int(np.prod(shape[1:])))
        v = np.sqrt(np.float32(6.0) / fan_in) * u
    elif name.endswith("bn.weight"):
        v = np.float32(1.0) + np.float32(0.25) * u
    elif name.endswith("bn.running_var"):
        v = np.float32(1.0) + np.float32(0.5) * u
    else:
        v = np.float32(0.1) * u
    assert v.dtype == np.float32
    return v.reshape(shape)


def load_synthetic(net, seed):
    sd = net.state_dict()
    for k, (name, shape) in enumerate(checkpoint_keys(net)):
        sd[name] = torch.from_numpy(synthetic_value(name, shape, k, seed))
    net.load_state_dict(sd)
    return net


def preprocess(images_u8):
    """uint8 (N, H, W, 3) -> (N, 3, 299, 299) in the module's dtype (float64 here), pytorch-fid style.
    The resize runs in float32 as pytorch-fid does; the rest in float64."""
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2.0 * x.double() - 1.0


def features(net, x):
    """(pool (N, 2048), spatial (N, 2023), logits without bias (N, 1008)) for preprocessed x."""
    captured = {}
    hook = net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.__setitem__("s", o))
    with torch.no_grad():
        h = x
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"):
            h = getattr(net, name)(h)
        pool = torch.flatten(h, 1)
        logits = pool @ net.fc.weight.t()
    hook.remove()
    spatial = captured["s"][:, :7].permute(0, 2, 3, 1).reshape(x.shape[0], -1)   # NHWC order, as TF
    return pool.numpy(), spatial.numpy(), logits.numpy()


def resize_tf_legacy(x, oh, ow):
    """TF1 ResizeBilinear (align_corners=False, half_pixel_centers=False) of (C, H, W) float32, in float32."""
    c, h, w = x.shape

    def taps(n_in, n_out):
        scale = np.float32(n_in) / np.float32(n_out)
        src = np.arange(n_out, dtype=np.float32) * scale
        lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (src - lo.astype(np.float32)).astype(np.float32)

    y0, y1, ly = taps(h, oh)
    x0, x1, lx = taps(w, ow)
    tl, tr = x[:, y0][:, :, x0], x[:, y0][:, :, x1]
    bl, br = x[:, y1][:, :, x0], x[:, y1][:, :, x1]
    top = tl + (tr - tl) * lx[None, None, :]
    bottom = bl + (br - bl) * lx[None, None, :]
    return (top + (bottom - top) * ly[None, :, None]).astype(np.float32)


def selfcheck():
    net = fid_inception()
    keys = checkpoint_keys(net)
    assert keys[0][0] == "Conv2d_1a_3x3.conv.weight" and keys[-1] == ("fc.bias", (1008,)), keys[-1]
    assert len(keys) == 94 * 5 + 2, len(keys)
    load_synthetic(net, 1).double()
    img = np.random.default_rng(0).integers(0, 256, size=(1, 40, 50, 3), dtype=np.uint8)
    pool, spatial, logits = features(net, preprocess(img))
    assert pool.shape == (1, 2048) and spatial.shape == (1, 2023) and logits.shape == (1, 1008)
    print("torchvision", torchvision.__version__, "keys", len(keys), "pool mean %.4f std %.4f" % (pool.mean(), pool.std()),
          "spatial mean %.4f" % spatial.mean(), "logits std %.4f" % logits.std())


if __name__ == "__main__":
    selfcheck()
