#!/usr/bin/python3
"""Our numpy/PyTorch port of the diffusion maths of DiT's diffusion/ package (gaussian_diffusion.py,
respace.py), written from docs/reference.md §2, plus DPM-Solver++(2M) as diffusers'
DPMSolverMultistepScheduler (algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
lower_order_final=True, timestep_spacing="linspace", final_sigmas_type="zero").

Tables are float64 numpy; the step functions take torch tensors and, like the reference's
_extract_into_tensor, cast every table entry to the state's dtype (float32) before use. With a float64
state (dtype=torch.float64) they give the "exact maths" used to measure float32 noise.
"""
import math

import numpy as np
import torch

LEARNED_RANGE, FIXED_LARGE, FIXED_SMALL = "learned_range", "fixed_large", "fixed_small"


# ---------------------------------------------------------------------------------------------
# schedules and respacing (§2.2, §2.3)
# ---------------------------------------------------------------------------------------------

def named_betas(name, T):
    if name == "linear":
        scale = 1000 / T
        return np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64)
    if name == "squaredcos_cap_v2":
        def alpha_bar(t):
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        return np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)],
                        dtype=np.float64)
    raise ValueError(name)


def space_timesteps(T, spec):
    """Sorted list of kept original timesteps. spec: "N", "a,b,c", "ddimN", or "" (all)."""
    if spec is None or spec == "":
        return list(range(T))
    if spec.startswith("ddim"):
        want = int(spec[4:])
        for stride in range(1, T):
            if len(range(0, T, stride)) == want:
                return sorted(set(range(0, T, stride)))
        raise ValueError(spec)
    counts = [int(c) for c in spec.split(",")]
    size_per, extra = T // len(counts), T % len(counts)
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(spec)
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))      # Python round: half to even
            cur += stride
        start += size
    return sorted(set(steps))


TABLE_NAMES = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next",
               "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
               "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
               "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
               "log_betas", "fixed_large_log_variance"]


class Diffusion:
    """GaussianDiffusion tables of a (respaced) process. timestep_map[i] = original t."""

    def __init__(self, schedule="linear", T=1000, respacing="", var_type=LEARNED_RANGE):
        base = named_betas(schedule, T)
        base_ac = np.cumprod(1.0 - base, axis=0)
        self.base_alphas_cumprod = base_ac
        self.timestep_map = space_timesteps(T, respacing)
        new_betas, last = [], 1.0
        for i, ac in enumerate(base_ac):           # SpacedDiffusion
            if i in set(self.timestep_map):
                new_betas.append(1 - ac / last)
                last = ac
        self.var_type = var_type
        b = np.array(new_betas, dtype=np.float64)
        self.betas = b
        self.num_timesteps = len(b)
        alphas = 1.0 - b
        ac = np.cumprod(alphas, axis=0)
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = np.append(1.0, ac[:-1])
        self.alphas_cumprod_next = np.append(ac[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        self.posterior_variance = b * (1.0 - self.alphas_cumprod_prev) / (1.0 - ac)
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1],
                                                               self.posterior_variance[1:]))
        self.posterior_mean_coef1 = b * np.sqrt(self.alphas_cumprod_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - ac)
        self.log_betas = np.log(b)
        self.fixed_large_log_variance = np.log(np.append(self.posterior_variance[1], b[1:]))

    def tables(self):
        return np.stack([getattr(self, n) for n in TABLE_NAMES])

    # ---- steps (torch) -------------------------------------------------------------------------

    def _extract(self, arr, t, x):
        """arr[t] cast to x's dtype, broadcast over (B, 1, 1, 1) (= _extract_into_tensor)."""
        res = torch.from_numpy(arr)[t].to(x.dtype)
        return res.reshape(-1, *([1] * (x.dim() - 1)))

    def p_mean_variance(self, model_output, x, t, clip_denoised=False):
        C = x.shape[1]
        if self.var_type == LEARNED_RANGE:
            assert model_output.shape[1] == 2 * C
            model_output, v = torch.split(model_output, C, dim=1)
            min_log = self._extract(self.posterior_log_variance_clipped, t, x)
            max_log = self._extract(np.log(self.betas), t, x)
            frac = (v + 1) / 2
            log_variance = frac * max_log + (1 - frac) * min_log
        else:
            table = self.fixed_large_log_variance if self.var_type == FIXED_LARGE \
                else self.posterior_log_variance_clipped
            log_variance = self._extract(table, t, x) * torch.ones_like(x)
        pred_xstart = (self._extract(self.sqrt_recip_alphas_cumprod, t, x) * x
                       - self._extract(self.sqrt_recipm1_alphas_cumprod, t, x) * model_output)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean = (self._extract(self.posterior_mean_coef1, t, x) * pred_xstart
                + self._extract(self.posterior_mean_coef2, t, x) * x)
        return mean, log_variance, pred_xstart

    def p_sample(self, model_output, x, t, noise, clip_denoised=False):
        mean, log_variance, pred_xstart = self.p_mean_variance(model_output, x, t, clip_denoised)
        mask = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return mean + mask * torch.exp(0.5 * log_variance) * noise, pred_xstart

    def ddim_sample(self, model_output, x, t, noise, clip_denoised=False, eta=0.0):
        _, _, pred_xstart = self.p_mean_variance(model_output, x, t, clip_denoised)
        eps = ((self._extract(self.sqrt_recip_alphas_cumprod, t, x) * x - pred_xstart)
               / self._extract(self.sqrt_recipm1_alphas_cumprod, t, x))
        ab = self._extract(self.alphas_cumprod, t, x)
        abp = self._extract(self.alphas_cumprod_prev, t, x)
        sigma = eta * torch.sqrt((1 - abp) / (1 - ab)) * torch.sqrt(1 - ab / abp)
        mean_pred = pred_xstart * torch.sqrt(abp) + torch.sqrt(1 - abp - sigma ** 2) * eps
        mask = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return mean_pred + mask * sigma * noise, pred_xstart

    # ---- loops ---------------------------------------------------------------------------------

    def sample_loop(self, model, x, kind="ddpm", noise_fn=None, eta=0.0, clip_denoised=False):
        """model(x, t_original) -> output; noise_fn(i) -> noise of respaced index i (ddpm, ddim eta>0)."""
        B = x.shape[0]
        for i in reversed(range(self.num_timesteps)):
            t = torch.full((B,), i, dtype=torch.int64)
            t_orig = torch.full((B,), float(self.timestep_map[i]), dtype=x.dtype)
            out = model(x, t_orig)
            noise = noise_fn(i) if (noise_fn is not None and i != 0) else torch.zeros_like(x)
            if kind == "ddpm":
                x, _ = self.p_sample(out, x, t, noise, clip_denoised)
            else:
                x, _ = self.ddim_sample(out, x, t, noise, clip_denoised, eta)
        return x


# ---------------------------------------------------------------------------------------------
# DPM-Solver++(2M) (Lu et al. 2022) as diffusers' DPMSolverMultistepScheduler
# ---------------------------------------------------------------------------------------------

def dpm_timesteps(T, n):
    """timestep_spacing="linspace": linspace(0, T-1, n+1).round()[::-1][:-1] (np.round: half to even)."""
    return np.linspace(0, T - 1, n + 1).round()[::-1][:-1].copy().astype(np.int64)


def dpmpp_2m_sample(base_alphas_cumprod, model, x, n, final_sigma_min=False):
    """model(x, t_original) -> output whose first C channels are eps. Coefficients in float64, cast to
    x's dtype (diffusers keeps float32 sigmas; see docs/diffusion.md)."""
    ac = base_alphas_cumprod
    T, C = len(ac), x.shape[1]
    ts = dpm_timesteps(T, n)
    sig = np.sqrt((1 - ac) / ac)
    sigmas = np.concatenate([sig[ts], [sig[0] if final_sigma_min else 0.0]])

    def alpha_sigma(s):
        a = 1.0 / math.sqrt(s * s + 1.0)
        return a, s * a

    def lam(s):
        a, sg = alpha_sigma(s)
        return math.log(a) - math.log(sg) if sg > 0 else math.inf

    x0_prev = None
    for k in range(n):
        t = torch.full((x.shape[0],), float(ts[k]), dtype=x.dtype)
        eps = model(x, t)[:, :C]
        a_s, s_s = alpha_sigma(sigmas[k])
        a_t, s_t = alpha_sigma(sigmas[k + 1])
        x0 = (x - torch.tensor(s_s, dtype=x.dtype) * eps) / torch.tensor(a_s, dtype=x.dtype)
        h = lam(sigmas[k + 1]) - lam(sigmas[k])
        phi = a_t * math.expm1(-h)                 # alpha_t (e^{-h} - 1)
        ratio = s_t / s_s
        final_zero = sigmas[k + 1] == 0
        first = k == 0 or (k == n - 1 and (final_zero or n < 15))
        if first:
            x = torch.tensor(ratio, dtype=x.dtype) * x - torch.tensor(phi, dtype=x.dtype) * x0
        else:
            h0 = lam(sigmas[k]) - lam(sigmas[k - 1])
            r0 = h0 / h
            x = (torch.tensor(ratio, dtype=x.dtype) * x - torch.tensor(phi, dtype=x.dtype) * x0
                 - torch.tensor(0.5 * phi / r0, dtype=x.dtype) * (x0 - x0_prev))
        x0_prev = x0
    return x


if __name__ == "__main__":
    d = Diffusion(respacing="250")
    print("alphas_cumprod[0, 249, 499, 999] (base):",
          [float("%.6g" % d.base_alphas_cumprod[i]) for i in (0, 249, 499, 999)])
    print("250: first", d.timestep_map[:4], "last", d.timestep_map[-3:], "betas[0..2]", d.betas[:3],
          "betas[-2:]", d.betas[-2:], "post var[1]", d.posterior_variance[1])
    print("25:", space_timesteps(1000, "25"))
    print("dpm 20:", dpm_timesteps(1000, 20))
