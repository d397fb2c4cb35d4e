// The training loss of DiT: IDDPM's training_losses with loss_type MSE and LEARNED_RANGE variance
// (reference.md §2.6): mse on the eps channels + the VB term with the mean detached, and its gradient
// with respect to the model output. Values are computed in float32 in the reference's operation order (table
// entries cast from float64 first, as _extract_into_tensor); sums and derivatives in double.
// Our PyTorch port of the reference loss: tests/ref/make_train_golden.py.
#include <math.h>
#include <string.h>

#include "base/rng.h"
#include "train/train.h"

uint64_t train_rng_u64(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t stream) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {c0, c1, c2, stream};
    uint32_t w[4];
    philox4x32_10(w, ctr, key);
    return (uint64_t)w[0] << 32 | w[1];
}

uint32_t train_rng_below(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t stream, uint32_t n) {
    return (uint32_t)(((unsigned __int128)train_rng_u64(seed, c0, c1, c2, stream) * n) >> 64);
}

double train_rng_uniform(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t stream) {
    return (double)(train_rng_u64(seed, c0, c1, c2, stream) >> 11) * 0x1p-53;
}

void train_q_sample(const diffusion *d, const int *t, const float *x0, const float *noise, int B, int64_t per_sample,
                    float *x_t) {
    for (int b = 0; b < B; b++) {
        const float a = (float)d->sqrt_alphas_cumprod[t[b]], s = (float)d->sqrt_one_minus_alphas_cumprod[t[b]];
        const float *x = x0 + b * per_sample, *n = noise + b * per_sample;
        float *y = x_t + b * per_sample;
        for (int64_t i = 0; i < per_sample; i++) y[i] = a * x[i] + s * n[i];
    }
}

// approx_standard_normal_cdf(x) = 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), float32 like the reference;
// *deriv gets its derivative (double).
static float approx_cdf(float x, double *deriv) {
    const float k = (float)0.7978845608028654;   // np.sqrt(2 / pi), cast by torch
    const float u = k * (x + 0.044715f * (x * x * x));
    const float th = tanhf(u);
    *deriv = 0.5 * (1.0 - (double)th * th) * (double)k * (1.0 + 3 * 0.044715 * (double)x * x);
    return 0.5f * (1.0f + th);
}

double train_vb_term(const diffusion *d, int t, const float *x0, const float *x_t, const float *eps, const float *v,
                     int64_t n, float *dv) {
    const float min_log = (float)d->posterior_log_variance_clipped[t], max_log = (float)d->log_betas[t];
    const float recip = (float)d->sqrt_recip_alphas_cumprod[t], recipm1 = (float)d->sqrt_recipm1_alphas_cumprod[t];
    const float coef1 = (float)d->posterior_mean_coef1[t], coef2 = (float)d->posterior_mean_coef2[t];
    const float bin = (float)(1.0 / 255.0);
    const double dlogvar_dv = 0.5 * ((double)max_log - (double)min_log);   // frac = (v + 1) / 2
    const double scale = 1.0 / ((double)n * log(2.0));                      // mean over dims, in bits
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        const float frac = (v[i] + 1.0f) / 2.0f;
        const float logvar = frac * max_log + (1.0f - frac) * min_log;
        const float pred_xstart = recip * x_t[i] - recipm1 * eps[i];
        const float mean = coef1 * pred_xstart + coef2 * x_t[i];
        double dterm_dlogvar;
        if (t > 0) {
            // normal_kl(true_mean, true_logvar, mean, logvar), true_logvar = the clipped posterior log-variance
            const float true_mean = coef1 * x0[i] + coef2 * x_t[i];
            const float diff = true_mean - mean;
            const float e1 = expf(min_log - logvar), e2 = expf(-logvar);
            const float kl = 0.5f * (-1.0f + logvar - min_log + e1 + diff * diff * e2);
            sum += kl;
            dterm_dlogvar = 0.5 * (1.0 - (double)e1 - (double)diff * diff * (double)e2);
        } else {
            // -discretized_gaussian_log_likelihood(x0, mean, log_scale = 0.5 logvar), bins of +-1/255
            const float log_scale = 0.5f * logvar;
            const float centered = x0[i] - mean, inv_stdv = expf(-log_scale);
            const float plus_in = inv_stdv * (centered + bin), min_in = inv_stdv * (centered - bin);
            double dplus, dmin;
            const float cdf_plus = approx_cdf(plus_in, &dplus), cdf_min = approx_cdf(min_in, &dmin);
            // d plus_in / d log_scale = -plus_in (likewise min_in)
            double lp, dlp_dscale = 0;
            if (x0[i] < -0.999f) {
                lp = logf(fmaxf(cdf_plus, 1e-12f));
                if (cdf_plus >= 1e-12f) dlp_dscale = dplus * -(double)plus_in / cdf_plus;
            } else if (x0[i] > 0.999f) {
                const float one_minus = 1.0f - cdf_min;
                lp = logf(fmaxf(one_minus, 1e-12f));
                if (one_minus >= 1e-12f) dlp_dscale = dmin * (double)min_in / one_minus;
            } else {
                const float delta = cdf_plus - cdf_min;
                lp = logf(fmaxf(delta, 1e-12f));
                if (delta >= 1e-12f) dlp_dscale = (dplus * -(double)plus_in + dmin * (double)min_in) / delta;
            }
            sum += -lp;
            dterm_dlogvar = -dlp_dscale * 0.5;   // log_scale = 0.5 logvar
        }
        if (dv) dv[i] = (float)(dterm_dlogvar * dlogvar_dv * scale);
    }
    return sum * scale;
}

double train_loss(const diffusion *d, const int *t, const float *x0, const float *x_t, const float *noise,
                  const float *model_out, int B, int C, int HW, float *mse, float *vb, float *dout) {
    return train_loss_part(d, t, x0, x_t, noise, model_out, B, B, C, HW, mse, vb, dout);
}

double train_loss_part(const diffusion *d, const int *t, const float *x0, const float *x_t, const float *noise,
                       const float *model_out, int B, int batch_total, int C, int HW, float *mse, float *vb,
                       float *dout) {
    return train_loss_part_weighted(d, t, x0, x_t, noise, model_out, NULL, B, batch_total, C, HW, mse, vb, dout);
}

double train_loss_part_weighted(const diffusion *d, const int *t, const float *x0, const float *x_t,
                                const float *noise, const float *model_out, const float *weight, int B,
                                int batch_total, int C, int HW, float *mse, float *vb, float *dout) {
    const int learned = d->var_type == DIFFUSION_VAR_LEARNED_RANGE;
    const int out_c = learned ? 2 * C : C;
    const int64_t n = (int64_t)C * HW;
    double total = 0;
    for (int b = 0; b < B; b++) {
        const float *eps = model_out + (int64_t)b * out_c * HW, *nz = noise + b * n;
        double sq = 0;
        for (int64_t i = 0; i < n; i++) {
            const float e = nz[i] - eps[i];
            sq += (double)(e * e);
        }
        // weight 1 multiplies exactly: the unweighted loss keeps its bits
        const double w = weight ? (double)weight[b] : 1.0;
        mse[b] = (float)(w * sq / (double)n);
        if (dout) {
            float *de = dout + (int64_t)b * out_c * HW;
            const double g = -2.0 * w / ((double)n * batch_total);
            for (int64_t i = 0; i < n; i++) de[i] = (float)(g * (double)(nz[i] - eps[i]));
        }
        vb[b] = 0;
        if (learned) {
            float *dv = dout ? dout + (int64_t)b * out_c * HW + n : NULL;
            vb[b] = (float)train_vb_term(d, t[b], x0 + b * n, x_t + b * n, eps, eps + n, n, dv);
            for (int64_t i = 0; dv && i < n; i++) dv[i] /= (float)batch_total;
        }
        total += (double)mse[b] + (double)vb[b];
    }
    return total / batch_total;
}
