#!/usr/bin/python3
"""Write tests/golden/train/: the DiT training loss and its gradients from our PyTorch port of the reference
training_losses (loss_type MSE, LEARNED_RANGE; docs/reference.md §2.6), the VB term against an
independent float64 numpy implementation, and torch.optim.AdamW steps.

    /usr/bin/python3 tests/ref/make_train_golden.py

Files (all small):
- loss_{x0,noise,t,y}.npy     inputs for the "tiny" config of tests/golden/dit/ (synthetic weights, seed 1),
                              t includes 0 and 999; x0 has exact -1/+1 values (the decoder NLL's edge bins)
- loss_terms.npy              float32 (B, 2): per-sample mse, vb (float32 torch)
- loss_dout.npy               float32 (B, 8, 8, 8): d mean_b(mse + vb) / d model output (autograd)
- loss_grad_{stats,sample_idx,sample}.npy   parameter gradients as tests/golden/grad/ stores them
- vb_{x0,x_t,eps,v,t}.npy, vb_bits.npy, vb_dv.npy   VB term (bits) and d vb / d v in float64 (numpy and
                              torch float64 autograd) for random inputs at several t
- adamw_{p0,grads,params,m,v}.npy   torch.optim.AdamW(lr 1e-3, weight_decay 0.05): 3 steps; params after
                              each step, moments after the last
meta.json records the losses and the float32-vs-float64 deviations.
"""
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion_ref  # noqa: E402
from make_dit_golden import CONFIGS, build_synthetic, config_dict  # noqa: E402

SAMPLES_PER_TENSOR = 8


# ---- our port of gaussian_diffusion.training_losses (MSE, LEARNED_RANGE, eps prediction) ----

def approx_standard_normal_cdf(x):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    centered_x = x - means
    inv_stdv = torch.exp(-log_scales)
    plus_in = inv_stdv * (centered_x + 1.0 / 255.0)
    cdf_plus = approx_standard_normal_cdf(plus_in)
    min_in = inv_stdv * (centered_x - 1.0 / 255.0)
    cdf_min = approx_standard_normal_cdf(min_in)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    cdf_delta = cdf_plus - cdf_min
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, torch.log(cdf_delta.clamp(min=1e-12))))


def normal_kl(mean1, logvar1, mean2, logvar2):
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + ((mean1 - mean2) ** 2) * torch.exp(-logvar2))


def mean_flat(x):
    return x.mean(dim=list(range(1, x.dim())))


def vb_terms_bpd(D, model_output, x_start, x_t, t):
    """_vb_terms_bpd(clip_denoised=False) with the LEARNED_RANGE p_mean_variance of diffusion_ref."""
    ex = D._extract
    true_mean = ex(D.posterior_mean_coef1, t, x_t) * x_start + ex(D.posterior_mean_coef2, t, x_t) * x_t
    true_log_var = ex(D.posterior_log_variance_clipped, t, x_t)
    mean, log_var, _ = D.p_mean_variance(model_output, x_t, t, clip_denoised=False)
    kl = mean_flat(normal_kl(true_mean, true_log_var, mean, log_var)) / math.log(2.0)
    nll = mean_flat(-discretized_gaussian_log_likelihood(x_start, mean, 0.5 * log_var)) / math.log(2.0)
    return torch.where(t == 0, nll, kl)


def training_losses(D, model_output, x_start, noise, t):
    C = x_start.shape[1]
    x_t = (D._extract(D.sqrt_alphas_cumprod, t, x_start) * x_start
           + D._extract(D.sqrt_one_minus_alphas_cumprod, t, x_start) * noise)
    eps, v = torch.split(model_output, C, dim=1)
    frozen = torch.cat([eps.detach(), v], dim=1)
    vb = vb_terms_bpd(D, frozen, x_start, x_t, t)
    mse = mean_flat((noise - eps) ** 2)
    return mse, vb, x_t


# ---- an independent float64 numpy VB (the formulas written out) ----

def numpy_vb(D, t, x0, x_t, eps, v):
    min_log, max_log = D.posterior_log_variance_clipped[t], np.log(D.betas[t])
    logvar = (v + 1) / 2 * max_log + (1 - (v + 1) / 2) * min_log
    pred = D.sqrt_recip_alphas_cumprod[t] * x_t - D.sqrt_recipm1_alphas_cumprod[t] * eps
    mean = D.posterior_mean_coef1[t] * pred + D.posterior_mean_coef2[t] * x_t
    if t > 0:
        tm = D.posterior_mean_coef1[t] * x0 + D.posterior_mean_coef2[t] * x_t
        kl = 0.5 * (-1 + logvar - min_log + np.exp(min_log - logvar) + (tm - mean) ** 2 * np.exp(-logvar))
        return kl.mean() / np.log(2)

    def cdf(z):
        return 0.5 * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
    inv = np.exp(-0.5 * logvar)
    cp, cm = cdf(inv * (x0 - mean + 1 / 255)), cdf(inv * (x0 - mean - 1 / 255))
    lp = np.where(x0 < -0.999, np.log(np.maximum(cp, 1e-12)),
                  np.where(x0 > 0.999, np.log(np.maximum(1 - cm, 1e-12)), np.log(np.maximum(cp - cm, 1e-12))))
    return (-lp).mean() / np.log(2)


def grad_summary(model, rng):
    sd_order = list(model.state_dict().keys())
    grads = dict((n, (p.grad.numpy().copy() if p.grad is not None else np.zeros(tuple(p.shape))))
                 for n, p in model.named_parameters())
    stats, idx, offset = [], [], 0
    for k in sd_order:
        a = grads[k].astype(np.float32).reshape(-1)
        stats.append([float(a.astype(np.float64).sum()), float((a.astype(np.float64) ** 2).sum()),
                      float(np.abs(a).max())])
        if k != "pos_embed":
            pick = rng.choice(a.size, size=min(SAMPLES_PER_TENSOR, a.size), replace=False)
            idx.extend(int(offset + i) for i in sorted(pick))
        offset += a.size
    flat = np.concatenate([grads[k].astype(np.float32).reshape(-1) for k in sd_order])
    idx = np.array(idx, dtype=np.int64)
    return np.array(stats, dtype=np.float64), idx, flat[idx], flat


def loss_golden(out_dir, meta):
    name, cfg, _, seed = [config_dict(r) for r in CONFIGS if r[0] == "tiny"][0]
    B, S, C = 4, cfg["input_size"], cfg["in_channels"]
    rng = np.random.default_rng(77)
    x0 = rng.uniform(-1, 1, size=(B, C, S, S)).astype(np.float32)
    edge = rng.random((B, C, S, S))
    x0[edge < 0.15] = -1.0
    x0[edge > 0.85] = 1.0
    noise = rng.standard_normal((B, C, S, S), dtype=np.float32)
    t = np.array([0, 1, 500, 999], dtype=np.int64)
    y = np.array([3, cfg["num_classes"], 7, 0], dtype=np.int64)   # one null label (label dropout)
    D = diffusion_ref.Diffusion()
    res = {}
    for dtype in (torch.float32, torch.float64):
        m = build_synthetic(cfg, seed, dtype)
        m.train(False)
        X0, N = torch.from_numpy(x0).to(dtype), torch.from_numpy(noise).to(dtype)
        T = torch.from_numpy(t)
        x_t = (D._extract(D.sqrt_alphas_cumprod, T, X0) * X0 + D._extract(D.sqrt_one_minus_alphas_cumprod, T, X0) * N)
        out = m(x_t, T.to(dtype), torch.from_numpy(y))
        out.retain_grad()
        mse, vb, _ = training_losses(D, out, X0, N, T)
        loss = (mse + vb).mean()
        loss.backward()
        res[dtype] = (mse.detach().numpy(), vb.detach().numpy(), out.grad.numpy().copy(), m, float(loss))
    mse, vb, dout, m32, loss32 = res[torch.float32]
    mse64, vb64, dout64, m64, loss64 = res[torch.float64]
    stats, idx, sample, flat = grad_summary(m32, np.random.default_rng(5))
    _, _, _, flat64 = grad_summary(m64, np.random.default_rng(5))
    for k, a in (("x0", x0), ("noise", noise), ("t", t), ("y", y)):
        np.save(os.path.join(out_dir, "loss_%s.npy" % k), a)
    np.save(os.path.join(out_dir, "loss_terms.npy"), np.stack([mse, vb], axis=1).astype(np.float32))
    np.save(os.path.join(out_dir, "loss_dout.npy"), dout.astype(np.float32))
    np.save(os.path.join(out_dir, "loss_grad_stats.npy"), stats)
    np.save(os.path.join(out_dir, "loss_grad_sample_idx.npy"), idx)
    np.save(os.path.join(out_dir, "loss_grad_sample.npy"), sample)
    meta["loss"] = dict(config=name, seed=seed, batch=B, loss=loss32, loss_f64=loss64,
                        mse=mse.tolist(), vb=vb.tolist(), mse_f64=mse64.tolist(), vb_f64=vb64.tolist(),
                        dout_max_abs_f32_vs_f64=float(np.abs(dout - dout64).max()),
                        dout_max_abs=float(np.abs(dout64).max()),
                        grad_max_abs_f32_vs_f64=float(np.abs(flat - flat64).max()),
                        grad_max_abs=float(np.abs(flat64).max()), total_floats=int(flat.size))
    print("loss: %.7f (f64 %.7f); mse %s vb %s" % (loss32, loss64, mse, vb))


def vb_golden(out_dir, meta):
    D = diffusion_ref.Diffusion()
    ts = [0, 0, 1, 2, 10, 100, 500, 999]
    n = 48
    rng = np.random.default_rng(11)
    x0 = rng.uniform(-1, 1, size=(len(ts), n))
    x0[:, :6] = -1.0
    x0[:, 6:12] = 1.0
    x0[1] = np.round(x0[1] * 127.5) / 127.5                   # on the 8-bit grid
    eps = rng.standard_normal((len(ts), n))
    noise = eps + 0.3 * rng.standard_normal((len(ts), n))
    v = rng.uniform(-1.2, 1.2, size=(len(ts), n))
    x_t = np.stack([D.sqrt_alphas_cumprod[t] * x0[i] + D.sqrt_one_minus_alphas_cumprod[t] * noise[i]
                    for i, t in enumerate(ts)])
    x0, eps, v, x_t = (a.astype(np.float32) for a in (x0, eps, v, x_t))
    bits = np.array([numpy_vb(D, t, *(a[i].astype(np.float64) for a in (x0, x_t, eps, v))) for i, t in enumerate(ts)])
    # d vb / d v by float64 autograd of the torch port
    V = torch.from_numpy(v.astype(np.float64)).reshape(len(ts), 1, n, 1).requires_grad_(True)
    out = torch.cat([torch.from_numpy(eps.astype(np.float64)).reshape(len(ts), 1, n, 1), V], dim=1)
    T = torch.tensor(ts)
    vb = vb_terms_bpd(D, out, torch.from_numpy(x0.astype(np.float64)).reshape(len(ts), 1, n, 1),
                      torch.from_numpy(x_t.astype(np.float64)).reshape(len(ts), 1, n, 1), T)
    vb.sum().backward()
    assert np.allclose(vb.detach().numpy(), bits, rtol=1e-10, atol=1e-12), (vb, bits)
    for k, a in (("x0", x0), ("x_t", x_t), ("eps", eps), ("v", v)):
        np.save(os.path.join(out_dir, "vb_%s.npy" % k), a)
    np.save(os.path.join(out_dir, "vb_t.npy"), np.array(ts, dtype=np.int64))
    np.save(os.path.join(out_dir, "vb_bits.npy"), bits)
    np.save(os.path.join(out_dir, "vb_dv.npy"), V.grad.numpy().reshape(len(ts), n))
    meta["vb"] = dict(t=ts, n=n, bits=bits.tolist())
    print("vb bits:", bits)


def adamw_golden(out_dir, meta):
    rng = np.random.default_rng(3)
    n, steps = 37, 3
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = (rng.standard_normal((steps, n)) * np.array([1, 1e-3, 10])[:, None]).astype(np.float32)
    grads[:, 0] = 0.0                                          # a parameter with zero gradient still decays
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.AdamW([p], lr=1e-3, weight_decay=0.05)
    params = []
    for s in range(steps):
        p.grad = torch.from_numpy(grads[s].copy())
        opt.step()
        params.append(p.detach().numpy().copy())
    st = opt.state[p]
    np.save(os.path.join(out_dir, "adamw_p0.npy"), p0)
    np.save(os.path.join(out_dir, "adamw_grads.npy"), grads)
    np.save(os.path.join(out_dir, "adamw_params.npy"), np.stack(params))
    np.save(os.path.join(out_dir, "adamw_m.npy"), st["exp_avg"].numpy())
    np.save(os.path.join(out_dir, "adamw_v.npy"), st["exp_avg_sq"].numpy())
    meta["adamw"] = dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.05, steps=steps, n=n,
                         grad_scales=[1, 1e-3, 10], torch=torch.__version__)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = os.path.normpath(os.path.join(here, "..", "golden", "train"))
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    meta = {"description": "DiT training loss / gradients, VB term, AdamW: see tests/ref/make_train_golden.py"}
    loss_golden(out_dir, meta)
    vb_golden(out_dir, meta)
    adamw_golden(out_dir, meta)
    with open(os.path.join(out_dir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
        fh.write("\n")
    total = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    print("wrote %s (%d bytes)" % (out_dir, total))


if __name__ == "__main__":
    main()
