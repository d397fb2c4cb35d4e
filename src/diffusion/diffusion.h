// The diffusion maths of DiT's diffusion/ package (IDDPM/ADM): beta schedules, timestep respacing,
// the float64 tables of GaussianDiffusion/SpacedDiffusion, and the samplers (DDPM ancestral, DDIM,
// DPM-Solver++(2M)). Reference: docs/reference.md §2; our port: tests/ref/diffusion_ref.py;
// notes and tolerances: docs/diffusion.md.
#ifndef DIT_DIFFUSION_H
#define DIT_DIFFUSION_H

#include <stdint.h>

#include "dit.h"

// How the sampler gets the variance of p(x_{t-1} | x_t) (the reference's ModelVarType).
typedef enum {
    DIFFUSION_VAR_LEARNED_RANGE = 0,  // model outputs 2C channels: eps, then v; log-var interpolates (§2.4)
    DIFFUSION_VAR_FIXED_LARGE,        // model outputs C channels; var = [posterior_var[1], beta[1:]]
    DIFFUSION_VAR_FIXED_SMALL,        // model outputs C channels; var = posterior variance (clipped log)
} diffusion_var_type;

typedef struct diffusion_options {
    const char *schedule;   // "linear" (DiT) or "squaredcos_cap_v2"; NULL = "linear"
    int diffusion_steps;    // T of the base process; <= 0 = 1000
    const char *respacing;  // "250", "a,b,c" (sections), "ddimN"; NULL or "" = all T steps
    int learn_sigma;        // 1: LEARNED_RANGE (DiT); 0: FIXED_LARGE, or FIXED_SMALL when sigma_small
    int sigma_small;
} diffusion_options;

// A (possibly respaced) Gaussian diffusion: every table has num_timesteps float64 entries, indexed by
// the respaced index i; timestep_map[i] is the ORIGINAL t given to the model.
typedef struct diffusion {
    int num_timesteps;              // N (respaced)
    int base_timesteps;             // T
    diffusion_var_type var_type;
    int *timestep_map;
    double *betas;                  // respaced: 1 - abar[k_i] / abar[k_{i-1}]
    double *alphas_cumprod, *alphas_cumprod_prev, *alphas_cumprod_next;
    double *sqrt_alphas_cumprod, *sqrt_one_minus_alphas_cumprod, *log_one_minus_alphas_cumprod;
    double *sqrt_recip_alphas_cumprod, *sqrt_recipm1_alphas_cumprod;
    double *posterior_variance, *posterior_log_variance_clipped;
    double *posterior_mean_coef1, *posterior_mean_coef2;
    double *log_betas;              // log(betas): max_log of LEARNED_RANGE
    double *fixed_log_variance;     // FIXED_LARGE: log [posterior_var[1], betas[1:]]; FIXED_SMALL: the clipped
                                    // posterior log-var; LEARNED_RANGE: the FIXED_LARGE table (unused)
    double *base_alphas_cumprod;    // T entries: abar of the unrespaced process (DPM-Solver++ uses these)
} diffusion;

// betas of a named schedule, float64, T entries (get_named_beta_schedule).
dit_status diffusion_named_betas(const char *schedule, int T, double *betas);
// The kept timesteps of space_timesteps(T, respacing), ascending; *steps is malloc'd.
dit_status diffusion_space_timesteps(int T, const char *respacing, int **steps, int *count);
dit_status diffusion_init(diffusion *d, const diffusion_options *opt);
void diffusion_free(diffusion *d);

// ---- one step, for a batch with a respaced index per sample (float32 state, float64 tables cast to
// float32 before use, as the reference's _extract_into_tensor). Shapes: x, noise, x_prev, pred_xstart:
// (B, C, HW); model_out: (B, 2C, HW) for LEARNED_RANGE else (B, C, HW).
// p_mean_variance: mean, log_variance, pred_xstart (each may be NULL).
void diffusion_p_mean_variance(const diffusion *d, const int *index, const float *x, const float *model_out,
                               int B, int C, int HW, int clip_denoised, float *mean, float *log_variance,
                               float *pred_xstart);
// p_sample: x_prev = mean + [index != 0] exp(0.5 log_var) noise. noise may be NULL when every index is 0.
void diffusion_p_sample(const diffusion *d, const int *index, const float *x, const float *model_out,
                        const float *noise, int B, int C, int HW, int clip_denoised, float *x_prev,
                        float *pred_xstart);
// ddim_sample: the learned variance is ignored; noise is used only when eta > 0 and index != 0.
void diffusion_ddim_sample(const diffusion *d, const int *index, const float *x, const float *model_out,
                           const float *noise, int B, int C, int HW, int clip_denoised, float eta,
                           float *x_prev, float *pred_xstart);

// ---- sampling loops ----

// The network (or its classifier-free-guided forward): model_out gets 2C channels when the diffusion is
// LEARNED_RANGE, else C. t_original: (B) original timesteps (0..T-1) as floats.
typedef dit_status (*denoise_fn)(void *ctx, const float *x, const float *t_original, int B, float *model_out);

// DDPM, DDIM and DPM-Solver++ sample eps models; Euler, Heun and Euler-Maruyama sample flow (v-flow) models
// (diffusion/flow.h: their d only says the output channels).
typedef enum {
    SAMPLER_DDPM = 0, SAMPLER_DDIM, SAMPLER_DPMPP_2M,
    SAMPLER_EULER, SAMPLER_HEUN, SAMPLER_EULER_MARUYAMA,
} sampler_kind;
#define SAMPLER_IS_FLOW(kind) ((kind) >= SAMPLER_EULER && (kind) <= SAMPLER_EULER_MARUYAMA)

typedef struct sampler_options {
    sampler_kind kind;
    float eta;                  // DDIM: 0 = deterministic
    int clip_denoised;          // clamp pred_xstart to [-1, 1] (DiT: 0)
    int dpm_steps;              // DPM-Solver++: number of model evaluations (> 0)
    int dpm_final_sigma_min;    // DPM-Solver++: 0 = last step to sigma 0 (default), 1 = to abar[0]
    int flow_steps;             // Euler / Heun / Euler-Maruyama: steps from t = 1 to 0 (> 0)
    // Noise of step s for sample b: rng_normal_fill(seed, first_sample_id + b, s, RNG_STREAM_STEP).
    uint64_t seed;
    uint32_t first_sample_id;
    // Test hook: when set, gives the noise of step `step` for the whole batch instead of the RNG.
    dit_status (*noise)(void *ctx, int step, int B, int64_t per_sample, float *dst);
    void *noise_ctx;
    void (*progress)(void *ctx, int step, int total);   // after each step: step = 1..total
    void *progress_ctx;
} sampler_options;

// The number of steps the loop reports to progress: N for DDPM/DDIM, dpm_steps for
// DPM-Solver++ and flow_steps for the flow samplers (Heun makes two evaluations a step).
int diffusion_sampler_steps(const diffusion *d, const sampler_options *opt);
// Run the sampler: x holds x_T (B, C, H*W) on entry and the sample x_0 on return. Steps run from the
// highest index to 0. DDPM/DDIM use d's respaced process; DPM-Solver++ uses d's base abar table.
dit_status diffusion_sample(const diffusion *d, const sampler_options *opt, denoise_fn model, void *model_ctx,
                            int B, int C, int HW, float *x);
// The initial noise x_T of samples first_sample_id.. (stream RNG_STREAM_INITIAL, step 0).
void diffusion_initial_noise(float *x, int B, int64_t per_sample, uint64_t seed, uint32_t first_sample_id);
// The noise of sampler step `step` for B samples: opt->noise when set, else the seeded per-sample stream
// (RNG_STREAM_STEP), so a sample's noise does not depend on the batch it is in. Shared by the DDPM/DDIM and
// the flow samplers.
dit_status sampler_step_noise(const sampler_options *opt, int step, int B, int64_t per_sample, float *noise);

// DPM-Solver++ timesteps (diffusers "linspace" spacing): round-half-even(linspace(0, T-1, n+1)) reversed,
// the final 0 dropped: n entries, descending (n = 20, T = 1000: 999, 949, ..., 50).
void diffusion_dpm_timesteps(int T, int n, int *timesteps);

#endif
