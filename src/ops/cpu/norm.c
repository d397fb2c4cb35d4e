// LayerNorm (no affine, eps 1e-6) fused with the adaLN modulation of the reference DiTBlock/FinalLayer:
// modulate(norm(x), shift, scale) = norm(x) * (1 + scale) + shift. Statistics accumulate in double.
#include <math.h>

#include "ops/ops.h"

void layernorm_modulate_forward(float *y, float *mean, float *rstd, const float *x, const float *shift,
                                const float *scale, int row_stride, int B, int T, int D) {
    const double eps = 1e-6;
    #pragma omp parallel for collapse(2) schedule(static)
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
