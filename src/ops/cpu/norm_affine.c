// LayerNorm with its learned affine, nn.LayerNorm(D, eps=1e-6): the norm of the plain (unconditioned)
// transformer blocks of the cross-attention and in-context designs (reference.md §1.13). Statistics in double,
// as layernorm_modulate_forward (norm.c) computes them.
#include <math.h>

#include "ops/ops.h"

void layernorm_affine_forward(float *y, float *mean, float *rstd, const float *x, const float *weight,
                              const float *bias, int64_t N, int D) {
    const double eps = 1e-6;
    #pragma omp parallel for schedule(guided)
    for (int64_t row = 0; row < N; row++) {
        const float *xr = x + row * D;
        float *yr = y + row * D;
        double sum = 0.0;
        for (int d = 0; d < D; d++) sum += xr[d];
        const double mu = sum / D;
        double var = 0.0;
        for (int d = 0; d < D; d++) {
            const double c = xr[d] - mu;
            var += c * c;
        }
        var /= D;   // biased variance, as nn.LayerNorm
        const float rs = (float)(1.0 / sqrt(var + eps)), m = (float)mu;
        for (int d = 0; d < D; d++) yr[d] = (xr[d] - m) * rs * weight[d] + bias[d];
        if (mean) mean[row] = m;
        if (rstd) rstd[row] = rs;
    }
}

// With xhat = (x - mean) * rstd and g = dy * weight:
//   dx += rstd * (g - mean_d(g) - xhat * mean_d(g * xhat)),  dweight += sum_rows dy * xhat,  dbias += sum_rows dy.
// dx runs over rows; dweight/dbias over blocks of columns, each thread owning its outputs (sums in double).
void layernorm_affine_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                               const float *mean, const float *rstd, const float *weight, int64_t N, int D) {
    #pragma omp parallel for schedule(guided)
    for (int64_t row = 0; row < N; row++) {
        const float *xr = x + row * D, *dyr = dy + row * D;
        float *dxr = dx + row * D;
        const float m = mean[row], rs = rstd[row];
        double sum_g = 0.0, sum_gx = 0.0;
        for (int d = 0; d < D; d++) {
            const float g = dyr[d] * weight[d];
            sum_g += g;
            sum_gx += (double)g * ((xr[d] - m) * rs);
        }
        const float mean_g = (float)(sum_g / D), mean_gx = (float)(sum_gx / D);
        for (int d = 0; d < D; d++) {
            const float g = dyr[d] * weight[d], xhat = (xr[d] - m) * rs;
            dxr[d] += rs * (g - mean_g - xhat * mean_gx);
        }
    }
    enum { COLS = 16 };
    const int blocks = (D + COLS - 1) / COLS;
    #pragma omp parallel for schedule(guided)
    for (int blk = 0; blk < blocks; blk++) {
        const int start = blk * COLS, end = start + COLS < D ? start + COLS : D;
        double dw[COLS] = {0}, db[COLS] = {0};
        for (int64_t row = 0; row < N; row++) {
            const float *xr = x + row * D, *dyr = dy + row * D;
            const float m = mean[row], rs = rstd[row];
            for (int d = start; d < end; d++) {
                dw[d - start] += (double)dyr[d] * ((xr[d] - m) * rs);
                db[d - start] += dyr[d];
            }
        }
        for (int d = start; d < end; d++) {
            dweight[d] += (float)dw[d - start];
            dbias[d] += (float)db[d - start];
        }
    }
}
