// Pointwise ops of the DiT network: SiLU, tanh-approximated GELU, and the gated residual of adaLN-Zero.
#include <math.h>

#include "base/threads.h"
#include "ops/cpu/fast_exp.h"
#include "ops/ops.h"

// Pointwise loops run in chunks: threads split the chunks, the compiler vectorises each chunk's plain loop.
#define CHUNK 4096

// Each chunk runs 8 lanes at a time (fast_exp8, equal to fast_expf lane by lane) and its tail one by one, so
// results are the same bits as the plain loop's.
static inline float sigmoid(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

void silu_forward_serial(float *y, const float *x, int64_t n) {
    int64_t i = 0;
#ifdef __AVX2__
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, fast_exp8(_mm256_sub_ps(zero, v)))));
    }
#endif
    for (; i < n; i++) y[i] = x[i] / (1.0f + fast_expf(-x[i]));
}

void silu_forward(float *y, const float *x, int64_t n) {
    #pragma omp parallel for schedule(guided) if (n > 4 * CHUNK)
    for (int64_t start = 0; start < n; start += CHUNK)
        silu_forward_serial(y + start, x + start, n - start < CHUNK ? n - start : CHUNK);
}

static void silu_backward_chunk(float *dx, const float *dy, const float *x, int n) {
    // d/dx x s(x) = s + x s (1 - s), s = sigmoid(x)
    int i = 0;
#ifdef __AVX2__
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, fast_exp8(_mm256_sub_ps(zero, v))));
        const __m256 slope = _mm256_add_ps(one, _mm256_mul_ps(v, _mm256_sub_ps(one, s)));
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + i), s), slope));
    }
#endif
    for (; i < n; i++) {
        float s = sigmoid(x[i]);
        dx[i] = dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

void silu_backward(float *dx, const float *dy, const float *x, int64_t n) {
    #pragma omp parallel for schedule(guided) if (n > 4 * CHUNK)
    for (int64_t start = 0; start < n; start += CHUNK)
        silu_backward_chunk(dx + start, dy + start, x + start, (int)(n - start < CHUNK ? n - start : CHUNK));
}

static void gelu_tanh_chunk(float *y, const float *x, int n) {
    // 0.5 x (1 + tanh(u)) = x * sigmoid(2u) = x / (1 + exp(-2u)): the same function, one exp instead of tanh.
    const float two_sqrt_2_over_pi = 2.0f * 0.7978845608028654f;
    int i = 0;
#ifdef __AVX2__
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), c = _mm256_set1_ps(0.044715f);
    const __m256 k = _mm256_set1_ps(two_sqrt_2_over_pi);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 cubic = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(c, v), v), v);
        const __m256 two_u = _mm256_mul_ps(k, _mm256_add_ps(v, cubic));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(one, fast_exp8(_mm256_sub_ps(zero, two_u)))));
    }
#endif
    for (; i < n; i++) {
        float v = x[i];
        float two_u = two_sqrt_2_over_pi * (v + 0.044715f * v * v * v);
        y[i] = v / (1.0f + fast_expf(-two_u));
    }
}

void gelu_tanh_forward(float *y, const float *x, int64_t n) {
    #pragma omp parallel for schedule(guided) if (n > 4 * CHUNK)
    for (int64_t start = 0; start < n; start += CHUNK)
        gelu_tanh_chunk(y + start, x + start, (int)(n - start < CHUNK ? n - start : CHUNK));
}

static void gelu_tanh_backward_chunk(float *dx, const float *dy, const float *x, int n) {
    // y = x s, s = sigmoid(2u), 2u = 2 sqrt(2/pi) (x + 0.044715 x^3):
    // dy/dx = s + x s (1 - s) * 2 sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    const float two_sqrt_2_over_pi = 2.0f * 0.7978845608028654f;
    int i = 0;
#ifdef __AVX2__
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps(), c = _mm256_set1_ps(0.044715f);
    const __m256 c3 = _mm256_set1_ps(3.0f * 0.044715f), k = _mm256_set1_ps(two_sqrt_2_over_pi);
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i), v2 = _mm256_mul_ps(v, v);
        const __m256 two_u = _mm256_mul_ps(k, _mm256_add_ps(v, _mm256_mul_ps(_mm256_mul_ps(c, v2), v)));
        const __m256 s = _mm256_div_ps(one, _mm256_add_ps(one, fast_exp8(_mm256_sub_ps(zero, two_u))));
        const __m256 dtwo_u = _mm256_mul_ps(k, _mm256_add_ps(one, _mm256_mul_ps(c3, v2)));
        const __m256 slope = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(v, s), _mm256_sub_ps(one, s)), dtwo_u);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), _mm256_add_ps(s, slope)));
    }
#endif
    for (; i < n; i++) {
        float v = x[i], v2 = v * v;
        float two_u = two_sqrt_2_over_pi * (v + 0.044715f * v2 * v);
        float s = 1.0f / (1.0f + fast_expf(-two_u));
        float dtwo_u = two_sqrt_2_over_pi * (1.0f + 3.0f * 0.044715f * v2);
        dx[i] = dy[i] * (s + v * s * (1.0f - s) * dtwo_u);
    }
}

void gelu_tanh_backward(float *dx, const float *dy, const float *x, int64_t n) {
    #pragma omp parallel for schedule(guided) if (n > 4 * CHUNK)
    for (int64_t start = 0; start < n; start += CHUNK)
        gelu_tanh_backward_chunk(dx + start, dy + start, x + start, (int)(n - start < CHUNK ? n - start : CHUNK));
}

void gated_residual_forward(float *x, const float *y, const float *bias, const float *gate, int row_stride,
                            int B, int T, int D) {
    #pragma omp parallel for collapse(2) schedule(guided)
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

// dy = gate * dx over (b, t) rows; dgate and dbias are sums over rows, so threads own column blocks of them.
// dg[start..end) += dxr * (yr + bias) (bias NULL: dxr * yr): one row's part of the gate's gradient.
static void add_gate_row(float *dg, const float *dxr, const float *yr, const float *bias, int start, int end) {
    if (bias)
        for (int d = start; d < end; d++) dg[d] += dxr[d] * (yr[d] + bias[d]);
    else
        for (int d = start; d < end; d++) dg[d] += dxr[d] * yr[d];
}

// gated_residual_backward's dy and dgate with a sample per thread: dgate summed from each row while it is in
// cache (in row order: the same sums, bit for bit, as the pass over columns), dx read once instead of twice.
static void gated_residual_backward_by_sample(float *dy, float *dgate, const float *dx, const float *y,
                                              const float *bias, const float *gate, int row_stride, int B, int T,
                                              int D) {
    #pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        const float *g = gate + (int64_t)b * row_stride;
        float *dg = dgate + (int64_t)b * row_stride;
        for (int d = 0; d < D; d++) dg[d] = 0.0f;
        for (int t = 0; t < T; t++) {
            const float *dxr = dx + ((int64_t)b * T + t) * D, *yr = y + ((int64_t)b * T + t) * D;
            float *dyr = dy + ((int64_t)b * T + t) * D;
            for (int d = 0; d < D; d++) dyr[d] = g[d] * dxr[d];
            add_gate_row(dg, dxr, yr, bias, 0, D);
        }
    }
}

// The same split over rows (dy), then over samples and column blocks (dgate): for fewer samples than threads.
static void gated_residual_backward_split(float *dy, float *dgate, const float *dx, const float *y, const float *bias,
                                          const float *gate, int row_stride, int B, int T, int D) {
    enum { COLS = 128 };
    const int blocks = (D + COLS - 1) / COLS;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *dxr = dx + ((int64_t)b * T + t) * D;
            float *dyr = dy + ((int64_t)b * T + t) * D;
            const float *g = gate + (int64_t)b * row_stride;
            for (int d = 0; d < D; d++) dyr[d] = g[d] * dxr[d];
        }
    }
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int blk = 0; blk < blocks; blk++) {
            const int start = blk * COLS, end = start + COLS < D ? start + COLS : D;
            float *dg = dgate + (int64_t)b * row_stride;
            for (int d = start; d < end; d++) dg[d] = 0.0f;
            for (int t = 0; t < T; t++) {
                add_gate_row(dg, dx + ((int64_t)b * T + t) * D, y + ((int64_t)b * T + t) * D, bias, start, end);
            }
        }
    }
}

void gated_residual_backward(float *dy, float *dbias, float *dgate, const float *dx, const float *y,
                             const float *bias, const float *gate, int row_stride, int B, int T, int D) {
    if (B >= dit_max_threads()) gated_residual_backward_by_sample(dy, dgate, dx, y, bias, gate, row_stride, B, T, D);
    else gated_residual_backward_split(dy, dgate, dx, y, bias, gate, row_stride, B, T, D);
    enum { COLS = 128 };
    const int blocks = (D + COLS - 1) / COLS;
    if (dbias) {
        #pragma omp parallel for schedule(guided)
        for (int blk = 0; blk < blocks; blk++) {
            const int start = blk * COLS, end = start + COLS < D ? start + COLS : D;
            for (int64_t row = 0; row < (int64_t)B * T; row++) {
                const float *dyr = dy + row * D;
                for (int d = start; d < end; d++) dbias[d] += dyr[d];
            }
        }
    }
}
