// Flow matching on DiT's backbone (SiT, Ma et al. 2024): the linear interpolant between data and Gaussian
// noise and velocity prediction, its training loss and its samplers (Euler and Heun ODE, Euler-Maruyama SDE).
// Time convention (docs/diffusion.md "Flow matching"): t in [0, 1], t = 0 is data, t = 1 is noise:
//   x_t = (1 - t) x0 + t noise,   v = dx_t/dt = noise - x0,   the network sees the timestep 1000 t.
// Our PyTorch reference: tests/ref/make_flow_golden.py.
#ifndef DIT_DIFFUSION_FLOW_H
#define DIT_DIFFUSION_FLOW_H

#include <stdint.h>

#include "diffusion/diffusion.h"

// The network's timestep for flow time t: the same 0..1000 range as DiT's eps timesteps, so the sinusoidal
// timestep embedding keeps its resolution (SiT feeds t in [0, 1]; the scale is a choice, not a change of model).
#define FLOW_TIME_SCALE 1000.0f

// x_t = (1 - t) x0 + t noise in float32. t: (B); x0, noise, x_t: (B, per_sample).
void flow_interpolate(const float *t, const float *x0, const float *noise, int B, int64_t per_sample, float *x_t);

// The velocity loss of B samples out of a batch of batch_total: per sample mse_b = mean_{C,H,W} (v_hat - v)^2
// with v = noise - x0, weighted by weight[b] (NULL = 1); returns sum_b weight_b mse_b / batch_total.
// model_out: (B, out_channels, HW), the velocity in channels 0..C-1; learned-sigma networks (out_channels = 2C)
// get no loss and a zero gradient on the other C channels (as SiT, which uses the first C as the velocity).
// mse: (B) the weighted per-sample terms; dout (may be NULL): like model_out, d loss / d model_out.
double flow_loss(const float *x0, const float *noise, const float *model_out, const float *weight, int B,
                 int batch_total, int C, int HW, int out_channels, float *mse, float *dout);

// Samplers from t = 1 (x holds the noise) to t = 0 on the uniform grid t_k = 1 - k/N, k = 0..N, h = 1/N:
//  Euler:  x <- x - h v(x, t_k)
//  Heun:   x' = x - h v(x, t_k);  x <- x - h/2 (v(x, t_k) + v(x', t_{k+1}))      (2 evaluations a step)
//  Euler-Maruyama on the reverse SDE with diffusion w(t) = t (SiT's "sigma" form) and the score from the
//  velocity, s = -(x + (1 - t) v) / t:  x <- x - h ((2 - t_k) v + x) + sqrt(2 t_k h) z  for k < N - 1; the last
//  step is the noise-free Euler step to t = 0 (x - t v, the denoised estimate).
// The state is float32; t and the coefficients are computed in double and cast to float32.
// Run the flow sampler opt->kind (SAMPLER_EULER, SAMPLER_HEUN, SAMPLER_EULER_MARUYAMA) with N = opt->flow_steps. model gets 1000 t as its timesteps and fills out_channels
// channels (the first C are the velocity, already guided when it applies classifier-free guidance). The noise
// of Euler-Maruyama step k for sample b is rng_normal_fill(seed, first_sample_id + b, k, RNG_STREAM_STEP) or
// opt->noise. Progress is reported once a step (k = 1..N).
dit_status flow_sample(const sampler_options *opt, denoise_fn model, void *model_ctx, int B, int C, int HW,
                       int out_channels, float *x);

#endif
