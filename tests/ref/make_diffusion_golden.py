#!/usr/bin/python3
"""Write tests/golden/diffusion/: respaced timestep lists and float64 tables, single sampler steps with
given model output and noise, and short sampling runs of the "tiny" synthetic DiT (tests/golden/dit)
under classifier-free guidance, from our reference port tests/ref/diffusion_ref.py.

    /usr/bin/python3 tests/ref/make_diffusion_golden.py [--out tests/golden/diffusion]

See tests/golden/diffusion/README.md (written by this script) for the file list and the measured
float32-vs-float64 deviations that set the C tolerances.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import diffusion_ref as dr  # noqa: E402
import dit_ref  # noqa: E402
from synthetic import fill_synthetic  # noqa: E402

RESPACINGS = ["250", "100", "50", "25", "10", "ddim50", "ddim25", "27,13"]
CFG_SCALE = 4.0
RUN_SEED = 10          # numpy default_rng seed for x_T and the DDPM noise
STEP_SEED = 11         # numpy default_rng seed for the single-step inputs


def tag(spec):
    return spec.replace(",", "_")


def tiny_model(dtype):
    cfgs = json.load(open(os.path.join(os.path.dirname(__file__), "..", "golden", "dit", "configs.json")))
    c = next(c for c in cfgs["configs"] if c["name"] == "tiny")
    cfg = {k: c[k] for k in ("input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads",
                             "mlp_ratio", "class_dropout_prob", "num_classes", "learn_sigma")}
    m = dit_ref.build(cfg, init="none")
    fill_synthetic(m, c["weight_seed"])
    m = m.to(dtype).eval()
    return m, c


def guided(m, y, null):
    """model(x, t) -> forward_with_cfg([x; x], [t; t], [y; null], 4.0)[:B] (official: channels 0..2)."""
    def fn(x, t):
        B = x.shape[0]
        with torch.no_grad():
            out = m.forward_with_cfg(torch.cat([x, x]), torch.cat([t, t]),
                                     torch.cat([y, torch.full((B,), null, dtype=torch.int64)]), CFG_SCALE)
        return out[:B]
    return fn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden",
                                                  "diffusion"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    meta = {"table_rows": dr.TABLE_NAMES, "respacings": {}}
    readme = []

    def save(name, arr):
        np.save(os.path.join(out, name), arr)

    # ---- 1. timestep lists and tables ------------------------------------------------------------
    for spec in RESPACINGS:
        d = dr.Diffusion(respacing=spec)
        save("resp_%s_timesteps.npy" % tag(spec), np.array(d.timestep_map, dtype=np.int64))
        save("resp_%s_tables.npy" % tag(spec), d.tables())
        meta["respacings"][spec] = {"count": d.num_timesteps, "timesteps": d.timestep_map}
    dc = dr.Diffusion(schedule="squaredcos_cap_v2", respacing="100")
    save("cosine_100_timesteps.npy", np.array(dc.timestep_map, dtype=np.int64))
    save("cosine_100_tables.npy", dc.tables())
    save("cosine_base_alphas_cumprod.npy", dc.base_alphas_cumprod)

    # ---- 2. single steps on "250" with given model output and noise ------------------------------
    rng = np.random.default_rng(STEP_SEED)
    B, C, S = 3, 4, 8
    index = np.array([249, 120, 0], dtype=np.int64)
    x = rng.standard_normal((B, C, S, S), dtype=np.float32) * np.float32(1.5)
    eps = rng.standard_normal((B, C, S, S), dtype=np.float32)
    v = rng.uniform(-1.2, 1.2, size=(B, C, S, S)).astype(np.float32)   # also outside [-1, 1]: not clamped
    noise = rng.standard_normal((B, C, S, S), dtype=np.float32)
    model_out = np.concatenate([eps, v], axis=1)
    save("step_index.npy", index)
    save("step_x.npy", x)
    save("step_model_out.npy", model_out)
    save("step_noise.npy", noise)
    X, MO, N, T = map(torch.from_numpy, (x, model_out, noise, index))
    d = dr.Diffusion(respacing="250")
    mean, logvar, x0 = d.p_mean_variance(MO, X, T)
    save("step_mean.npy", mean.numpy())
    save("step_log_variance.npy", logvar.numpy())
    save("step_pred_xstart.npy", x0.numpy())
    save("step_psample.npy", d.p_sample(MO, X, T, N)[0].numpy())
    save("step_psample_clip.npy", d.p_sample(MO, X, T, N, clip_denoised=True)[0].numpy())
    save("step_ddim_eta0.npy", d.ddim_sample(MO, X, T, N)[0].numpy())
    save("step_ddim_eta05.npy", d.ddim_sample(MO, X, T, N, eta=0.5)[0].numpy())
    for vt in (dr.FIXED_LARGE, dr.FIXED_SMALL):
        df = dr.Diffusion(respacing="250", var_type=vt)
        save("step_psample_%s.npy" % vt, df.p_sample(MO[:, :C], X, T, N)[0].numpy())

    # ---- 3. sampling runs of the tiny synthetic DiT with CFG 4.0 ----------------------------------
    m32, c = tiny_model(torch.float32)
    m64, _ = tiny_model(torch.float64)
    y = torch.tensor(c["y"], dtype=torch.int64)
    Bm, Cm, Sm = c["batch"], c["in_channels"], c["input_size"]
    rng = np.random.default_rng(RUN_SEED)
    xT = rng.standard_normal((Bm, Cm, Sm, Sm), dtype=np.float32)
    d10 = dr.Diffusion(respacing="10")
    ddpm_noise = rng.standard_normal((d10.num_timesteps, Bm, Cm, Sm, Sm), dtype=np.float32)
    save("run_xT.npy", xT)
    save("run_y.npy", np.array(c["y"], dtype=np.int64))
    save("ddpm10_noise.npy", ddpm_noise)
    runs = {
        "ddim10": lambda m, x: d10.sample_loop(guided(m, y, c["null_class"]), x, kind="ddim"),
        "ddim25": lambda m, x: dr.Diffusion(respacing="ddim25").sample_loop(guided(m, y, c["null_class"]), x,
                                                                              kind="ddim"),
        "ddpm10": lambda m, x: d10.sample_loop(guided(m, y, c["null_class"]), x, kind="ddpm",
                                               noise_fn=lambda i: torch.from_numpy(ddpm_noise[i]).to(x.dtype)),
        "dpmpp10": lambda m, x: dr.dpmpp_2m_sample(d10.base_alphas_cumprod, guided(m, y, c["null_class"]), x, 10),
    }
    meta["runs"] = {"x_T": "run_xT.npy", "y": c["y"], "cfg_scale": CFG_SCALE, "model": "tiny, weight seed %d"
                    % c["weight_seed"], "ddim10": "respacing '10', eta 0", "ddim25": "respacing 'ddim25', eta 0",
                    "ddpm10": "respacing '10', noise of index i = ddpm10_noise[i]",
                    "dpmpp10": "DPM-Solver++(2M), 10 steps, final sigma 0", "deviation": {}}
    for name, run in runs.items():
        s32 = run(m32, torch.from_numpy(xT)).numpy()
        s64 = run(m64, torch.from_numpy(xT).double()).numpy()
        save("%s_out.npy" % name, s32)
        dev = float(np.abs(s32 - s64).max())
        rms = float(np.sqrt((s64 ** 2).mean()))
        meta["runs"]["deviation"][name] = {"max_abs_f32_vs_f64": dev, "max_abs": float(np.abs(s64).max()),
                                           "rms": rms}
        readme.append("%-8s max|x0| %6.3f  rms %6.3f  max|f32 - f64| %.3g" % (name, np.abs(s64).max(), rms, dev))

    json.dump(meta, open(os.path.join(out, "meta.json"), "w"), indent=1)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out) if f != "README.md")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(README % ("\n".join(readme), size))
    print("\n".join(readme))
    print("wrote %s (%d bytes)" % (out, size))


README = """# Diffusion goldens

Made by (Debian's Python, torch 1.13, numpy; CPU):

    /usr/bin/python3 tests/ref/make_diffusion_golden.py

from `tests/ref/diffusion_ref.py`, our numpy/PyTorch port of DiT's gaussian_diffusion.py + respace.py
(docs/reference.md §2) and of diffusers' DPM-Solver++(2M). `meta.json` lists the timestep lists, the
table row names and the run settings.

- `resp_<spec>_timesteps.npy` int64, `resp_<spec>_tables.npy` float64 (15, N) for the linear schedule,
  T = 1000, respacings 250, 100, 50, 25, 10, ddim50, ddim25, 27,13 ("," written "_"). Rows, in order:
  betas, alphas_cumprod, alphas_cumprod_prev, alphas_cumprod_next, sqrt_alphas_cumprod,
  sqrt_one_minus_alphas_cumprod, log_one_minus_alphas_cumprod, sqrt_recip_alphas_cumprod,
  sqrt_recipm1_alphas_cumprod, posterior_variance, posterior_log_variance_clipped, posterior_mean_coef1,
  posterior_mean_coef2, log_betas, fixed_large_log_variance (log [posterior_variance[1], betas[1:]]).
- `cosine_100_*` the same for "squaredcos_cap_v2" respaced to 100; `cosine_base_alphas_cumprod.npy`.
- `step_*`: one step of the "250" process for 3 samples at respaced indices `step_index.npy` = [249, 120, 0]
  with given x (float32), model output (eps, then v uniform in [-1.2, 1.2]) and noise: p_mean_variance
  (`step_mean`, `step_log_variance`, `step_pred_xstart`), p_sample (`step_psample`, `step_psample_clip` with
  clip_denoised, `step_psample_fixed_large` / `_fixed_small` with the eps half only), ddim_sample
  (`step_ddim_eta0`, `step_ddim_eta05`). Float32 state, table entries cast to float32 (as the reference).
- Sampling runs of the "tiny" synthetic DiT (tests/golden/dit, weight seed 1) guided by forward_with_cfg at
  scale 4.0 (official: eps channels 0..2), labels `run_y.npy`, from x_T = `run_xT.npy`
  (default_rng(10) standard normal, then `ddpm10_noise.npy` from the same generator):
  `ddim10_out` (respacing "10", eta 0), `ddim25_out` ("ddim25", eta 0), `ddpm10_out` ("10", noise of
  respaced index i = `ddpm10_noise[i]`, index 0 unused), `dpmpp10_out` (DPM-Solver++(2M), 10 steps,
  final sigma 0, base T = 1000 table).

The same runs with a float64 model and float64 state measure the float32 noise of the reference itself:

```
%s
```

Total size of this directory (without README): %d bytes.
"""

if __name__ == "__main__":
    main()
