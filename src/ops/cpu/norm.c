// LayerNorm (no affine, eps 1e-6) fused with the adaLN modulation of the reference DiTBlock/FinalLayer:
// modulate(norm(x), shift, scale) = norm(x) * (1 + scale) + shift. Statistics accumulate in double.
#include <math.h>

#include "ops/ops.h"

// Row statistics in double over LANES independent partial sums (element d goes to lane d % LANES), added in a
// fixed tree at the end: the compiler runs the lanes as vectors, where one chain of D dependent double
// additions ran at the adder's latency (6.7% of sampling the shipped model, more than the chain's arithmetic
// is worth). The order depends only on D, so a row's statistics still depend only on the row.
#define LANES 8

static double lanes_total(const double *acc) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// sum_d x[d]
static double row_sum(const float *x, int D) {
    double acc[LANES] = {0};
    int d = 0;
    for (; d + LANES <= D; d += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += x[d + j];
    for (int j = 0; d + j < D; j++) acc[j] += x[d + j];
    return lanes_total(acc);
}

// sum_d (x[d] - mu)^2
static double row_squares(const float *x, double mu, int D) {
    double acc[LANES] = {0};
    int d = 0;
    for (; d + LANES <= D; d += LANES)
        for (int j = 0; j < LANES; j++) {
            const double c = x[d + j] - mu;
            acc[j] += c * c;
        }
    for (int j = 0; d + j < D; j++) {
        const double c = x[d + j] - mu;
        acc[j] += c * c;
    }
    return lanes_total(acc);
}

void layernorm_modulate_forward(float *y, float *mean, float *rstd, const float *x, const float *shift,
                                const float *scale, int row_stride, int B, int T, int D) {
    const double eps = 1e-6;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *xr = x + ((int64_t)b * T + t) * D;
            float *yr = y + ((int64_t)b * T + t) * D;
            const float *sh = shift + (int64_t)b * row_stride;
            const float *sc = scale + (int64_t)b * row_stride;
            const double mu = row_sum(xr, D) / D;
            const double var = row_squares(xr, mu, D) / D;   // biased variance, as nn.LayerNorm
            float rs = (float)(1.0 / sqrt(var + eps));
            float m = (float)mu;
            for (int d = 0; d < D; d++) yr[d] = (xr[d] - m) * rs * (1.0f + sc[d]) + sh[d];
            if (mean) mean[(int64_t)b * T + t] = m;
            if (rstd) rstd[(int64_t)b * T + t] = rs;
        }
    }
}

// With xhat = (x - mean) * rstd and g = dy * (1 + scale):
//   dx += rstd * (g - mean_d(g) - xhat * mean_d(g * xhat)),  dshift = sum_t dy,  dscale = sum_t dy * xhat.
// dx runs over (b, t) rows; dshift/dscale over (b, column block), each thread owning its outputs.
void layernorm_modulate_backward(float *dx, float *dshift, float *dscale, const float *dy, const float *x,
                                 const float *mean, const float *rstd, const float *scale, int row_stride,
                                 int B, int T, int D) {
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const int64_t row = (int64_t)b * T + t;
            const float *xr = x + row * D, *dyr = dy + row * D;
            const float *sc = scale + (int64_t)b * row_stride;
            float *dxr = dx + row * D;
            const float m = mean[row], rs = rstd[row];
            double acc_g[LANES] = {0}, acc_gx[LANES] = {0};   // lanes as in row_sum
            for (int d = 0; d < D; d++) {
                const float g = dyr[d] * (1.0f + sc[d]);
                acc_g[d % LANES] += g;
                acc_gx[d % LANES] += (double)g * ((xr[d] - m) * rs);
            }
            const double sum_g = lanes_total(acc_g), sum_gx = lanes_total(acc_gx);
            const float mean_g = (float)(sum_g / D), mean_gx = (float)(sum_gx / D);
            for (int d = 0; d < D; d++) {
                float g = dyr[d] * (1.0f + sc[d]);
                float xhat = (xr[d] - m) * rs;
                dxr[d] += rs * (g - mean_g - xhat * mean_gx);
            }
        }
    }
    enum { COLS = 128 };
    const int blocks = (D + COLS - 1) / COLS;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int blk = 0; blk < blocks; blk++) {
            const int start = blk * COLS, end = start + COLS < D ? start + COLS : D;
            float *dsh = dshift + (int64_t)b * row_stride, *dsc = dscale + (int64_t)b * row_stride;
            for (int d = start; d < end; d++) dsh[d] = dsc[d] = 0.0f;
            for (int t = 0; t < T; t++) {
                const int64_t row = (int64_t)b * T + t;
                const float *xr = x + row * D, *dyr = dy + row * D;
                const float m = mean[row], rs = rstd[row];
                for (int d = start; d < end; d++) {
                    dsh[d] += dyr[d];
                    dsc[d] += dyr[d] * ((xr[d] - m) * rs);
                }
            }
        }
    }
}
