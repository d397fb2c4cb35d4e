// LayerNorm (no affine, eps 1e-6) fused with the adaLN modulation of the reference DiTBlock/FinalLayer:
// modulate(norm(x), shift, scale) = norm(x) * (1 + scale) + shift. Statistics accumulate in double.
#include <math.h>

#include "ops/ops.h"

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
            double sum = 0.0;
            for (int d = 0; d < D; d++) sum += xr[d];
            double mu = sum / D;
            double var = 0.0;
            for (int d = 0; d < D; d++) {
                double c = xr[d] - mu;
                var += c * c;
            }
            var /= D;   // biased variance, as nn.LayerNorm
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
            double sum_g = 0.0, sum_gx = 0.0;
            for (int d = 0; d < D; d++) {
                float g = dyr[d] * (1.0f + sc[d]);
                sum_g += g;
                sum_gx += (double)g * ((xr[d] - m) * rs);
            }
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
