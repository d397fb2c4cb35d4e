#!/work/venv-torch/bin/python
"""Write tests/golden/flow/: flow matching (src/diffusion/flow.c) and the recipe schedules (src/train/recipe.c)
against references written here in PyTorch, independently of the C code:

  flow_*        the v-flow loss: x_t = (1 - t) x0 + t noise, per-sample mse of the velocity (first C of 2C output
                channels) times a weight, the batch mean, and d loss / d model_out by autograd (float32, and the
                float64 deviation in meta.json)
  logit_*       t = sigmoid(m + s z), z = sqrt(-2 ln(1 - u1)) cos(2 pi u2) for given uniforms, and the eps index
                min(999, floor(1000 t))
  minsnr_*      min(SNR, gamma) / SNR with SNR = abar / (1 - abar) of the linear 1000-step schedule (float64)
  lr_*          the learning rate per step: torch.optim.lr_scheduler (LinearLR warm-up, then CosineAnnealingLR
                or LinearLR decay) on a real optimizer
  ema_*         the EMA decay per update: min(decay, (1 + n) / (10 + n)) and min(decay, (1 - 1/(n+1))^(g+1))
  traj_*        Euler, Heun and Euler-Maruyama trajectories (6 steps) of a fixed toy velocity field
                v(x, tau) = sin(x) + 0.0005 tau cos(3 x) - 0.3 (tau = 1000 t, the network's timestep), float32

    /work/venv-torch/bin/python tests/ref/make_flow_golden.py [--out tests/golden/flow]
"""
import argparse
import json
import math
import os

import numpy as np
import torch


def save(out, name, a):
    np.save(os.path.join(out, name + ".npy"), np.ascontiguousarray(a))


def flow_loss(x0, noise, t, out, weight, C):
    """Per-sample weighted velocity mse and the batch mean; out (B, 2C, HW), the velocity in channels 0..C-1."""
    x_t = (1 - t)[:, None, None] * x0 + t[:, None, None] * noise
    v = noise - x0
    mse = ((out[:, :C] - v) ** 2).mean(dim=(1, 2)) * weight
    return x_t, mse, mse.mean()


def toy_velocity(x, tau):
    return torch.sin(x) + 0.0005 * tau * torch.cos(3 * x) - 0.3


def trajectory(kind, x, N, noise):
    """The samplers of src/diffusion/flow.h on the uniform grid t_k = 1 - k/N, float32 state."""
    x = x.clone()
    h = 1.0 / N
    for k in range(N):
        t, t_next = 1.0 - k / N, 1.0 - (k + 1) / N
        v = toy_velocity(x, torch.tensor(np.float32(1000.0 * t)))
        if kind == "euler":
            x = x - np.float32(h) * v
        elif kind == "heun":
            x_pred = x - np.float32(h) * v
            v2 = toy_velocity(x_pred, torch.tensor(np.float32(1000.0 * t_next)))
            x = x - np.float32(0.5 * h) * (v + v2)
        elif k == N - 1:                     # Euler-Maruyama: the last step is x - t v, no noise
            x = x - np.float32(t) * v
        else:                                # reverse SDE, w(t) = t, score -(x + (1 - t) v) / t
            x = x - np.float32(h) * (np.float32(2.0 - t) * v + x) + np.float32(math.sqrt(2.0 * t * h)) * noise[k]
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "golden", "flow"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(16)
    meta = {"command": "/work/venv-torch/bin/python tests/ref/make_flow_golden.py", "torch": torch.__version__}

    # ---- the v-flow loss (B 4, C 2, HW 16; a learned-sigma network: 2C output channels) ----
    B, C, HW = 4, 2, 16
    x0 = rng.uniform(-1, 1, (B, C, HW)).astype(np.float32)
    x0[0, 0, :4] = [-1, 1, -1, 1]
    noise = rng.standard_normal((B, C, HW)).astype(np.float32)
    t = np.array([0.0, 0.3, 0.77, 0.999], np.float32)
    out = rng.standard_normal((B, 2 * C, HW)).astype(np.float32)
    weight = np.array([1.0, 0.5, 2.0, 1.0], np.float32)
    o32 = torch.tensor(out, requires_grad=True)
    x_t, mse, loss = flow_loss(torch.tensor(x0), torch.tensor(noise), torch.tensor(t), o32, torch.tensor(weight), C)
    loss.backward()
    o64 = torch.tensor(out, dtype=torch.float64, requires_grad=True)
    _, mse64, loss64 = flow_loss(*(torch.tensor(a, dtype=torch.float64) for a in (x0, noise, t)), o64,
                                 torch.tensor(weight, dtype=torch.float64), C)
    loss64.backward()
    for name, a in (("x0", x0), ("noise", noise), ("t", t), ("out", out), ("weight", weight),
                    ("x_t", x_t.detach().numpy()), ("mse", mse.detach().numpy()),
                    ("loss", np.array([loss.item()], np.float64)), ("dout", o32.grad.numpy())):
        save(args.out, "flow_" + name, a)
    meta["flow_f32_vs_f64"] = {"mse_rel": float(((mse.double() - mse64).abs() / mse64).max()),
                               "dout_abs": float((o32.grad.double() - o64.grad).abs().max()),
                               "dout_max": float(o64.grad.abs().max())}

    # ---- logit-normal t ----
    u = rng.uniform(0, 1, (64, 2))
    u[0] = [0.0, 0.0]
    u[1] = [0.999999, 0.5]
    params = [(0.0, 1.0), (-0.5, 1.4), (0.3, 0.6)]
    ts = []
    for m, s in params:
        u1, u2 = torch.tensor(u[:, 0], dtype=torch.float64), torch.tensor(u[:, 1], dtype=torch.float64)
        z = torch.sqrt(-2 * torch.log1p(-u1)) * torch.cos(2 * math.pi * u2)
        ts.append(torch.sigmoid(m + s * z).numpy())
    ts = np.stack(ts)
    save(args.out, "logit_u", u)
    save(args.out, "logit_params", np.array(params, np.float64))
    save(args.out, "logit_t", ts)
    save(args.out, "logit_index", np.minimum(999, np.floor(ts * 1000)).astype(np.int64))

    # ---- min-SNR-gamma weights of the linear schedule ----
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    snr = abar / (1 - abar)
    steps = torch.tensor([0, 1, 10, 100, 250, 500, 750, 999])
    for g in (1.0, 5.0):
        save(args.out, "minsnr_gamma%g" % g, (torch.clamp(snr[steps], max=g) / snr[steps]).numpy())
    save(args.out, "minsnr_t", steps.numpy())

    # ---- learning-rate schedules through torch.optim.lr_scheduler ----
    lr, lr_min, warmup, decay_end, total = 3e-4, 3e-5, 50, 400, 450
    lrs = {}
    for kind in ("constant", "cosine", "linear"):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=lr)
        warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
        if kind == "cosine":
            after = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=decay_end - warmup, eta_min=lr_min)
        elif kind == "linear":
            after = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=lr_min / lr,
                                                      total_iters=decay_end - warmup)
        else:
            after = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
        sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, after], milestones=[warmup - 1])
        values = []
        for step in range(total):        # the rate used by update `step` (0-based)
            values.append(opt.param_groups[0]["lr"] if step < decay_end or kind == "constant" else lr_min)
            opt.step()
            sched.step()
        lrs[kind] = values
    save(args.out, "lr_values", np.array([lrs[k] for k in ("constant", "cosine", "linear")], np.float64))
    meta["lr"] = {"lr": lr, "lr_min": lr_min, "warmup": warmup, "decay_steps": decay_end, "steps": total,
                  "rows": ["constant", "cosine", "linear"],
                  "note": "past decay_steps CosineAnnealingLR would rise again; the schedule holds lr_min there"}

    # ---- EMA decay schedules ----
    n = np.concatenate([np.arange(0, 40), [99, 999, 9999, 99999]]).astype(np.float64)
    warm = np.minimum(0.999, (1 + n) / (10 + n))
    power = np.minimum(0.9999, (1 - 1 / (n + 1)) ** (6.94 + 1))
    save(args.out, "ema_n", n)
    save(args.out, "ema_warmup", warm)
    save(args.out, "ema_power", power)
    meta["ema"] = {"warmup_cap": 0.999, "power_cap": 0.9999, "power_gamma": 6.94}

    # ---- sampler trajectories of the toy velocity ----
    N, Bt, n_el = 6, 2, 8
    x1 = rng.standard_normal((Bt, 1, n_el)).astype(np.float32)
    em_noise = rng.standard_normal((N, Bt, 1, n_el)).astype(np.float32)
    save(args.out, "traj_x1", x1)
    save(args.out, "traj_noise", em_noise)
    for kind in ("euler", "heun", "em"):
        x = trajectory(kind, torch.tensor(x1), N, torch.tensor(em_noise))
        save(args.out, "traj_" + kind, x.numpy())
    meta["traj"] = {"steps": N, "velocity": "sin(x) + 0.0005 tau cos(3x) - 0.3, tau = 1000 t"}
    with open(os.path.join(args.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
