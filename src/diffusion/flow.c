// Flow matching (SiT; docs/diffusion.md "Flow matching"): the linear interpolant, the velocity loss and its
// gradient, and the Euler / Heun / Euler-Maruyama samplers from t = 1 (noise) to t = 0 (data). Formulas in
// diffusion/flow.h; our PyTorch reference is tests/ref/make_flow_golden.py.
#include <math.h>
#include <stdlib.h>

#include "base/error.h"
#include "base/rng.h"
#include "diffusion/flow.h"

void flow_interpolate(const float *t, const float *x0, const float *noise, int B, int64_t per_sample, float *x_t) {
    for (int b = 0; b < B; b++) {
        const float tb = t[b], keep = 1.0f - tb;
        const float *x = x0 + b * per_sample, *n = noise + b * per_sample;
        float *y = x_t + b * per_sample;
        for (int64_t i = 0; i < per_sample; i++) y[i] = keep * x[i] + tb * n[i];
    }
}

double flow_loss(const float *x0, const float *noise, const float *model_out, const float *weight, int B,
                 int batch_total, int C, int HW, int out_channels, float *mse, float *dout) {
    const int64_t n = (int64_t)C * HW, out_n = (int64_t)out_channels * HW;
    double total = 0;
    for (int b = 0; b < B; b++) {
        const float *v_hat = model_out + b * out_n, *x = x0 + b * n, *nz = noise + b * n;
        const double w = weight ? (double)weight[b] : 1.0;
        double sq = 0;
        for (int64_t i = 0; i < n; i++) {
            const float e = v_hat[i] - (nz[i] - x[i]);   // v_hat - v, v = noise - x0
            sq += (double)(e * e);
        }
        mse[b] = (float)(w * sq / (double)n);
        if (dout) {
            // d/dv_hat of w mean (v_hat - v)^2 / batch_total; the extra channels of a learned-sigma net get 0
            float *d = dout + b * out_n;
            const double g = 2.0 * w / ((double)n * batch_total);
            for (int64_t i = 0; i < n; i++) d[i] = (float)(g * (double)(v_hat[i] - (nz[i] - x[i])));
            for (int64_t i = n; i < out_n; i++) d[i] = 0.0f;
        }
        total += (double)mse[b];
    }
    return total / batch_total;
}

// The velocity (first C channels) of every sample at flow time t.
static dit_status velocity(denoise_fn model, void *ctx, const float *x, double t, int B, float *t_model,
                           float *out) {
    for (int b = 0; b < B; b++) t_model[b] = (float)(FLOW_TIME_SCALE * t);
    return model(ctx, x, t_model, B, out);
}

dit_status flow_sample(const sampler_options *opt, denoise_fn model, void *model_ctx, int B, int C, int HW,
                       int out_channels, float *x) {
    const int N = opt->flow_steps;
    if (N < 1) return dit_set_error("flow sampler: %d steps, expected at least 1", N);
    if (!SAMPLER_IS_FLOW(opt->kind)) return dit_set_error("flow sampler: sampler %d is not a flow sampler", (int)opt->kind);
    const int64_t n = (int64_t)C * HW, out_n = (int64_t)out_channels * HW;
    float *v = dit_malloc(sizeof(float) * (size_t)(B * out_n)), *t_model = dit_malloc(sizeof(float) * (size_t)B);
    float *v2 = NULL, *x_pred = NULL, *noise = NULL;
    if (opt->kind == SAMPLER_HEUN) {
        v2 = dit_malloc(sizeof(float) * (size_t)(B * out_n));
        x_pred = dit_malloc(sizeof(float) * (size_t)(B * n));
    }
    if (opt->kind == SAMPLER_EULER_MARUYAMA) noise = dit_malloc(sizeof(float) * (size_t)(B * n));
    const double h = 1.0 / N;
    dit_status status = DIT_OK;
    if (!v || !t_model || (opt->kind == SAMPLER_HEUN && (!v2 || !x_pred)) ||
        (opt->kind == SAMPLER_EULER_MARUYAMA && !noise))
        status = DIT_ERR;   // out of memory (message recorded); the buffers are freed below
    for (int k = 0; k < N && status == DIT_OK; k++) {
        const double t = 1.0 - (double)k / N, t_next = 1.0 - (double)(k + 1) / N;
        if ((status = velocity(model, model_ctx, x, t, B, t_model, v))) break;
        if (opt->kind == SAMPLER_EULER) {
            const float hf = (float)h;
            for (int b = 0; b < B; b++)
                for (int64_t i = 0; i < n; i++) x[b * n + i] -= hf * v[b * out_n + i];
        } else if (opt->kind == SAMPLER_HEUN) {
            const float hf = (float)h, half = (float)(0.5 * h);
            for (int b = 0; b < B; b++)
                for (int64_t i = 0; i < n; i++) x_pred[b * n + i] = x[b * n + i] - hf * v[b * out_n + i];
            if ((status = velocity(model, model_ctx, x_pred, t_next, B, t_model, v2))) break;
            for (int b = 0; b < B; b++)
                for (int64_t i = 0; i < n; i++) x[b * n + i] -= half * (v[b * out_n + i] + v2[b * out_n + i]);
        } else if (k == N - 1) {
            // Euler-Maruyama's last step: to t = 0 without noise, x - t v (the denoised estimate)
            const float tf = (float)t;
            for (int b = 0; b < B; b++)
                for (int64_t i = 0; i < n; i++) x[b * n + i] -= tf * v[b * out_n + i];
        } else {
            // x <- x - h ((2 - t) v + x) + sqrt(2 t h) z: the reverse SDE with w(t) = t, the score from v
            if ((status = sampler_step_noise(opt, k, B, n, noise))) break;
            const float hf = (float)h, a = (float)(2.0 - t), s = (float)sqrt(2.0 * t * h);
            for (int b = 0; b < B; b++)
                for (int64_t i = 0; i < n; i++) {
                    const float xi = x[b * n + i];
                    x[b * n + i] = xi - hf * (a * v[b * out_n + i] + xi) + s * noise[b * n + i];
                }
        }
        if (opt->progress) opt->progress(opt->progress_ctx, k + 1, N);
    }
    free(v), free(t_model), free(v2), free(x_pred), free(noise);
    return status;
}
