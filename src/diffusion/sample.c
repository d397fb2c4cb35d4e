// The samplers: the reference's p_sample (DDPM ancestral) and ddim_sample on the respaced process
// (diffusion/gaussian_diffusion.py; docs/reference.md §2.4-2.5), and DPM-Solver++(2M) as diffusers'
// DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint, lower_order_final). The state is float32;
// float64 table entries are cast to float32 before use, like _extract_into_tensor. See docs/diffusion.md.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "diffusion/diffusion.h"
#include "diffusion/flow.h"

static int model_channels(const diffusion *d, int C) {
    return d->var_type == DIFFUSION_VAR_LEARNED_RANGE ? 2 * C : C;
}

static float clamp1(float v) { return v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v; }

// The table entries of one respaced index, cast to float32 as _extract_into_tensor does.
typedef struct {
    float sqrt_recip, sqrt_recipm1;   // sqrt(1/abar), sqrt(1/abar - 1)
    float coef1, coef2;               // posterior mean coefficients
    float min_log, max_log;           // LEARNED_RANGE: clipped posterior log-var, log beta
    float fixed_log;                  // FIXED_*: the fixed log-variance
} step_coefficients;

static step_coefficients coefficients_at(const diffusion *d, int i) {
    DIT_CHECK(i >= 0 && i < d->num_timesteps);
    return (step_coefficients){
        .sqrt_recip = (float)d->sqrt_recip_alphas_cumprod[i], .sqrt_recipm1 = (float)d->sqrt_recipm1_alphas_cumprod[i],
        .coef1 = (float)d->posterior_mean_coef1[i], .coef2 = (float)d->posterior_mean_coef2[i],
        .min_log = (float)d->posterior_log_variance_clipped[i], .max_log = (float)d->log_betas[i],
        .fixed_log = (float)d->fixed_log_variance[i]};
}

// p_mean_variance for one element: x_t, eps and (LEARNED_RANGE) the variance value v.
static inline void mean_variance_element(const diffusion *d, const step_coefficients *k, float x, float eps,
                                         float v, int clip_denoised, float *mean, float *log_variance,
                                         float *pred_xstart) {
    float x0 = k->sqrt_recip * x - k->sqrt_recipm1 * eps;   // _predict_xstart_from_eps
    if (clip_denoised) x0 = clamp1(x0);
    *pred_xstart = x0;
    *mean = k->coef1 * x0 + k->coef2 * x;                   // q_posterior mean
    if (d->var_type == DIFFUSION_VAR_LEARNED_RANGE) {
        float frac = (v + 1.0f) / 2.0f;                     // v is not clamped (reference)
        *log_variance = frac * k->max_log + (1.0f - frac) * k->min_log;
    } else {
        *log_variance = k->fixed_log;
    }
}

void diffusion_p_mean_variance(const diffusion *d, const int *index, const float *x, const float *model_out,
                               int B, int C, int HW, int clip_denoised, float *mean, float *log_variance,
                               float *pred_xstart) {
    const int out_channels = model_channels(d, C);
    const int64_t n = (int64_t)C * HW;
    for (int b = 0; b < B; b++) {
        const step_coefficients k = coefficients_at(d, index[b]);
        const float *eps = model_out + (int64_t)b * out_channels * HW;
        const float *v = d->var_type == DIFFUSION_VAR_LEARNED_RANGE ? eps + n : NULL;   // channels C..2C-1
        for (int64_t j = 0; j < n; j++) {
            float m, lv, x0;
            mean_variance_element(d, &k, x[b * n + j], eps[j], v ? v[j] : 0.0f, clip_denoised, &m, &lv, &x0);
            if (mean) mean[b * n + j] = m;
            if (log_variance) log_variance[b * n + j] = lv;
            if (pred_xstart) pred_xstart[b * n + j] = x0;
        }
    }
}

void diffusion_p_sample(const diffusion *d, const int *index, const float *x, const float *model_out,
                        const float *noise, int B, int C, int HW, int clip_denoised, float *x_prev,
                        float *pred_xstart) {
    const int out_channels = model_channels(d, C);
    const int64_t n = (int64_t)C * HW;
#pragma omp parallel for schedule(guided) if ((int64_t)B * n > 65536)
    for (int b = 0; b < B; b++) {
        const step_coefficients k = coefficients_at(d, index[b]);
        const int add_noise = index[b] != 0;   // nonzero_mask: no noise at index 0
        DIT_CHECK(!add_noise || noise != NULL);
        const float *eps = model_out + (int64_t)b * out_channels * HW;
        const float *v = d->var_type == DIFFUSION_VAR_LEARNED_RANGE ? eps + n : NULL;
        for (int64_t j = 0; j < n; j++) {
            float m, lv, x0;
            mean_variance_element(d, &k, x[b * n + j], eps[j], v ? v[j] : 0.0f, clip_denoised, &m, &lv, &x0);
            if (pred_xstart) pred_xstart[b * n + j] = x0;
            // x_prev may alias x: element j of x has been read above
            x_prev[b * n + j] = add_noise ? m + expf(0.5f * lv) * noise[b * n + j] : m;
        }
    }
}

void diffusion_ddim_sample(const diffusion *d, const int *index, const float *x, const float *model_out,
                           const float *noise, int B, int C, int HW, int clip_denoised, float eta,
                           float *x_prev, float *pred_xstart) {
    const int out_channels = model_channels(d, C);
    const int64_t n = (int64_t)C * HW;
#pragma omp parallel for schedule(guided) if ((int64_t)B * n > 65536)
    for (int b = 0; b < B; b++) {
        const int i = index[b];
        const step_coefficients k = coefficients_at(d, i);
        const float sqrt_recip = k.sqrt_recip, sqrt_recipm1 = k.sqrt_recipm1;
        const float alpha_bar = (float)d->alphas_cumprod[i], alpha_bar_prev = (float)d->alphas_cumprod_prev[i];
        // sigma = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev), in float32 as the reference
        const float sigma = eta * sqrtf((1.0f - alpha_bar_prev) / (1.0f - alpha_bar)) *
                            sqrtf(1.0f - alpha_bar / alpha_bar_prev);
        const float sqrt_alpha_bar_prev = sqrtf(alpha_bar_prev);
        const float eps_coef = sqrtf(1.0f - alpha_bar_prev - sigma * sigma);
        const int use_noise = i != 0 && sigma != 0.0f;
        DIT_CHECK(!use_noise || noise != NULL);
        const float *xb = x + b * n;
        const float *model_eps = model_out + (int64_t)b * out_channels * HW;
        for (int64_t j = 0; j < n; j++) {
            float x0 = sqrt_recip * xb[j] - sqrt_recipm1 * model_eps[j];
            if (clip_denoised) x0 = clamp1(x0);
            if (pred_xstart) pred_xstart[b * n + j] = x0;
            // eps re-derived from pred_xstart (_predict_eps_from_xstart): differs from the model's eps
            // only when clipping, or by float32 rounding, exactly as in the reference.
            float eps = (sqrt_recip * xb[j] - x0) / sqrt_recipm1;
            float mean_pred = x0 * sqrt_alpha_bar_prev + eps_coef * eps;
            x_prev[b * n + j] = use_noise ? mean_pred + sigma * noise[b * n + j] : mean_pred;
        }
    }
}

int diffusion_sampler_steps(const diffusion *d, const sampler_options *opt) {
    if (SAMPLER_IS_FLOW(opt->kind)) return opt->flow_steps;
    return opt->kind == SAMPLER_DPMPP_2M ? opt->dpm_steps : d->num_timesteps;
}

void diffusion_initial_noise(float *x, int B, int64_t per_sample, uint64_t seed, uint32_t first_sample_id) {
    for (int b = 0; b < B; b++)
        rng_normal_fill(x + b * per_sample, per_sample, seed, first_sample_id + (uint32_t)b, 0, RNG_STREAM_INITIAL);
}

dit_status sampler_step_noise(const sampler_options *opt, int step, int B, int64_t per_sample, float *noise) {
    if (opt->noise) return opt->noise(opt->noise_ctx, step, B, per_sample, noise);
    for (int b = 0; b < B; b++)
        rng_normal_fill(noise + b * per_sample, per_sample, opt->seed, opt->first_sample_id + (uint32_t)b,
                        (uint32_t)step, RNG_STREAM_STEP);
    return DIT_OK;
}

// DDPM / DDIM over the respaced indices N-1 .. 0; the model gets timestep_map[i].
static dit_status sample_respaced(const diffusion *d, const sampler_options *opt, denoise_fn model,
                                  void *model_ctx, int B, int C, int HW, float *x, float *model_out,
                                  float *noise, float *t, int *index) {
    const int64_t per_sample = (int64_t)C * HW;
    const int N = d->num_timesteps;
    for (int i = N - 1; i >= 0; i--) {
        for (int b = 0; b < B; b++) t[b] = (float)d->timestep_map[i], index[b] = i;
        if (model(model_ctx, x, t, B, model_out) != DIT_OK) return DIT_ERR;
        int needs_noise = i != 0 && (opt->kind == SAMPLER_DDPM || opt->eta != 0.0f);
        if (needs_noise && sampler_step_noise(opt, i, B, per_sample, noise) != DIT_OK) return DIT_ERR;
        // x_prev is written element by element after reading x at the same element: in place is safe.
        if (opt->kind == SAMPLER_DDPM)
            diffusion_p_sample(d, index, x, model_out, needs_noise ? noise : NULL, B, C, HW, opt->clip_denoised,
                               x, NULL);
        else
            diffusion_ddim_sample(d, index, x, model_out, needs_noise ? noise : NULL, B, C, HW,
                                  opt->clip_denoised, opt->eta, x, NULL);
        if (opt->progress) opt->progress(opt->progress_ctx, N - i, N);
    }
    return DIT_OK;
}

// alpha_t, sigma_t of the VP process from sigma = sqrt((1 - abar) / abar) (diffusers _sigma_to_alpha_sigma_t).
static void dpm_alpha_sigma(double sigma, double *alpha_t, double *sigma_t) {
    *alpha_t = 1.0 / sqrt(sigma * sigma + 1.0);
    *sigma_t = sigma * *alpha_t;
}

// DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Alg. 2) in lambda = log(alpha / sigma) of the base
// abar table, with diffusers' choices: n timesteps from diffusion_dpm_timesteps, data prediction
// x0 = (x - sigma eps) / alpha, first order at the first step and at the last (lower_order_final; with the
// final sigma 0 that step returns x0), second order ("midpoint") between.
static dit_status sample_dpmpp_2m(const diffusion *d, const sampler_options *opt, denoise_fn model,
                                  void *model_ctx, int B, int C, int HW, float *x, float *model_out, float *t) {
    const int n = opt->dpm_steps, T = d->base_timesteps, out_channels = model_channels(d, C);
    if (n < 1 || n > T)
        return dit_set_error("DPM-Solver++: %d steps, expected 1..%d", n, T);
    const int64_t per_sample = (int64_t)C * HW, total = (int64_t)B * per_sample;
    int *timesteps = dit_malloc(sizeof(int) * (size_t)n);
    double *sigmas = dit_malloc(sizeof(double) * (size_t)(n + 1));
    float *x0 = dit_malloc(sizeof(float) * (size_t)total), *x0_prev = dit_malloc(sizeof(float) * (size_t)total);
    if (!timesteps || !sigmas || !x0 || !x0_prev) {
        free(x0), free(x0_prev), free(sigmas), free(timesteps);
        return DIT_ERR;
    }
    diffusion_dpm_timesteps(T, n, timesteps);
    const double *abar = d->base_alphas_cumprod;
    for (int k = 0; k < n; k++) sigmas[k] = sqrt((1.0 - abar[timesteps[k]]) / abar[timesteps[k]]);
    sigmas[n] = opt->dpm_final_sigma_min ? sqrt((1.0 - abar[0]) / abar[0]) : 0.0;
    double lambda_prev = 0;
    dit_status status = DIT_OK;
    for (int k = 0; k < n; k++) {
        for (int b = 0; b < B; b++) t[b] = (float)timesteps[k];
        if (model(model_ctx, x, t, B, model_out) != DIT_OK) {
            status = DIT_ERR;
            break;
        }
        double alpha_s, sigma_s, alpha_t, sigma_t;
        dpm_alpha_sigma(sigmas[k], &alpha_s, &sigma_s);
        dpm_alpha_sigma(sigmas[k + 1], &alpha_t, &sigma_t);
        const double lambda_s = log(alpha_s) - log(sigma_s);
        // data prediction (convert_model_output, epsilon parameterisation); the variance half is ignored
        const float sigma_s_f = (float)sigma_s, alpha_s_f = (float)alpha_s;
        for (int b = 0; b < B; b++) {
            const float *eps = model_out + (int64_t)b * out_channels * HW;
            for (int64_t j = 0; j < per_sample; j++) {
                float v = (x[b * per_sample + j] - sigma_s_f * eps[j]) / alpha_s_f;
                x0[b * per_sample + j] = opt->clip_denoised ? clamp1(v) : v;
            }
        }
        const int final_zero = sigmas[k + 1] == 0.0;
        const int first_order = k == 0 || (k == n - 1 && (final_zero || n < 15));
        // x_t = (sigma_t / sigma_s) x - alpha_t (e^{-h} - 1) D0 - 0.5 alpha_t (e^{-h} - 1) D1, h = lambda_t - lambda_s;
        // sigma_t = 0 means lambda_t = +inf: ratio 0, e^{-h} = 0.
        double ratio = final_zero ? 0.0 : sigma_t / sigma_s;
        double h = final_zero ? INFINITY : (log(alpha_t) - log(sigma_t)) - lambda_s;
        double phi = alpha_t * (final_zero ? -1.0 : expm1(-h));   // alpha_t (e^{-h} - 1)
        const float ratio_f = (float)ratio, phi_f = (float)phi;
        if (first_order) {
            for (int64_t j = 0; j < total; j++) x[j] = ratio_f * x[j] - phi_f * x0[j];
        } else {
            // D1 = (m0 - m1) / r0, r0 = h_0 / h with h_0 = lambda_s - lambda_prev
            double r0 = (lambda_s - lambda_prev) / h;
            const float d1_f = (float)(0.5 * phi / r0);
            for (int64_t j = 0; j < total; j++)
                x[j] = ratio_f * x[j] - phi_f * x0[j] - d1_f * (x0[j] - x0_prev[j]);
        }
        float *swap = x0_prev;
        x0_prev = x0, x0 = swap;
        lambda_prev = lambda_s;
        if (opt->progress) opt->progress(opt->progress_ctx, k + 1, n);
    }
    free(x0), free(x0_prev), free(sigmas), free(timesteps);
    return status;
}

dit_status diffusion_sample(const diffusion *d, const sampler_options *opt, denoise_fn model, void *model_ctx,
                            int B, int C, int HW, float *x) {
    if (B < 1 || C < 1 || HW < 1) return dit_set_error("sampler: batch %d, channels %d, pixels %d", B, C, HW);
    if (SAMPLER_IS_FLOW(opt->kind)) return flow_sample(opt, model, model_ctx, B, C, HW, model_channels(d, C), x);
    if (opt->kind != SAMPLER_DDPM && opt->kind != SAMPLER_DDIM && opt->kind != SAMPLER_DPMPP_2M)
        return dit_set_error("sampler: unknown sampler %d", (int)opt->kind);
    const int64_t per_sample = (int64_t)C * HW;
    float *model_out = dit_malloc(sizeof(float) * (size_t)(B * model_channels(d, C) * (int64_t)HW));
    float *t = dit_malloc(sizeof(float) * (size_t)B);
    dit_status status = DIT_ERR;
    if (!model_out || !t) {
        // out of memory: the message is set
    } else if (opt->kind == SAMPLER_DPMPP_2M) {
        status = sample_dpmpp_2m(d, opt, model, model_ctx, B, C, HW, x, model_out, t);
    } else {
        float *noise = dit_malloc(sizeof(float) * (size_t)(B * per_sample));
        int *index = dit_malloc(sizeof(int) * (size_t)B);
        if (noise && index) status = sample_respaced(d, opt, model, model_ctx, B, C, HW, x, model_out, noise, t, index);
        free(noise), free(index);
    }
    free(model_out), free(t);
    return status;
}
