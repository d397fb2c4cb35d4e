// Pointwise ops of the DiT network: SiLU, tanh-approximated GELU, and the gated residual of adaLN-Zero.
#include <math.h>

#include "ops/cpu/fast_exp.h"
#include "ops/ops.h"

// Pointwise loops run in chunks: threads split the chunks, the compiler vectorises each chunk's plain loop.
#define CHUNK 4096

static void silu_chunk(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] = x[i] / (1.0f + fast_expf(-x[i]));
}

void silu_forward(float *y, const float *x, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 4 * CHUNK)
    for (int64_t start = 0; start < n; start += CHUNK)
        silu_chunk(y + start, x + start, (int)(n - start < CHUNK ? n - start : CHUNK));
}

static void gelu_tanh_chunk(float *y, const float *x, int n) {
    // 0.5 x (1 + tanh(u)) = x * sigmoid(2u) = x / (1 + exp(-2u)): the same function, one exp instead of tanh.
    const float two_sqrt_2_over_pi = 2.0f * 0.7978845608028654f;
    for (int i = 0; i < n; i++) {
        float v = x[i];
        float two_u = two_sqrt_2_over_pi * (v + 0.044715f * v * v * v);
        y[i] = v / (1.0f + fast_expf(-two_u));
    }
}

void gelu_tanh_forward(float *y, const float *x, int64_t n) {
    #pragma omp parallel for schedule(static) if (n > 4 * CHUNK)
    for (int64_t start = 0; start < n; start += CHUNK)
        gelu_tanh_chunk(y + start, x + start, (int)(n - start < CHUNK ? n - start : CHUNK));
}

void gated_residual_forward(float *x, const float *y, const float *bias, const float *gate, int row_stride,
                            int B, int T, int D) {
    #pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *xr = x + ((int64_t)b * T + t) * D;
            const float *yr = y + ((int64_t)b * T + t) * D;
            const float *g = gate + (int64_t)b * row_stride;
            if (bias)
                for (int d = 0; d < D; d++) xr[d] += g[d] * (yr[d] + bias[d]);
            else
                for (int d = 0; d < D; d++) xr[d] += g[d] * yr[d];
        }
    }
}
