// The autoencoder's kernels (dit-reference.md §4.4): conv2d by banded im2col + OpenBLAS sgemm, GroupNorm
// with float64 statistics and an optional fused SiLU, nearest 2x upsampling, and single-head spatial
// attention over query blocks. Naive-loop oracles for all of them live in tests/test_vae.c.
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/error.h"
#include "ops/conv.h"
#include "ops/cpu/fast_exp.h"

// 64 MB of column buffer: a band of output rows of a 512-channel 3x3 conv is ~3,600 positions.
#define CONV_COLUMN_BUDGET_FLOATS ((int64_t)16 * 1024 * 1024)

int conv2d_out_size(int in, int kernel, int stride, int pad_before, int pad_after) {
    int span = in + pad_before + pad_after - kernel;
    return span < 0 ? 0 : span / stride + 1;
}

// Fill col (K, rows * OW), K = Cin * KH * KW in (ci, ky, kx) order (the weight's layout), for output rows
// [oy0, oy0 + rows) of one sample; positions falling in the padding are zero.
static void im2col_band(float *col, const float *x, int Cin, int H, int W, int KH, int KW, int stride, int pad_top,
                        int pad_left, int OW, int oy0, int rows) {
    const int K = Cin * KH * KW;
    const int64_t N = (int64_t)rows * OW;
    #pragma omp parallel for schedule(static) if (K * N > 32768)
    for (int kk = 0; kk < K; kk++) {
        const int ci = kk / (KH * KW), ky = kk / KW % KH, kx = kk % KW;
        const float *plane = x + (int64_t)ci * H * W;
        float *dst = col + (int64_t)kk * N;
        for (int r = 0; r < rows; r++) {
            const int iy = (oy0 + r) * stride - pad_top + ky;
            float *d = dst + (int64_t)r * OW;
            if (iy < 0 || iy >= H) {
                memset(d, 0, (size_t)OW * sizeof *d);
                continue;
            }
            const float *src = plane + (int64_t)iy * W;
            if (stride == 1) {
                // ix = ox - pad_left + kx: zeros before 0 and after W - 1, a copy in between
                int first = pad_left - kx, last = W - 1 + pad_left - kx;   // valid ox range
                if (first < 0) first = 0;
                if (last > OW - 1) last = OW - 1;
                if (first > last) {
                    memset(d, 0, (size_t)OW * sizeof *d);
                    continue;
                }
                if (first > 0) memset(d, 0, (size_t)first * sizeof *d);
                memcpy(d + first, src + first - pad_left + kx, (size_t)(last - first + 1) * sizeof *d);
                if (last < OW - 1) memset(d + last + 1, 0, (size_t)(OW - 1 - last) * sizeof *d);
            } else {
                for (int ox = 0; ox < OW; ox++) {
                    const int ix = ox * stride - pad_left + kx;
                    d[ox] = ix >= 0 && ix < W ? src[ix] : 0.0f;
                }
            }
        }
    }
}

void conv2d_forward_budget(float *out, const float *x, const float *weight, const float *bias, int B, int Cin,
                           int H, int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left,
                           int pad_bottom, int pad_right, int64_t budget_floats) {
    const int OH = conv2d_out_size(H, KH, stride, pad_top, pad_bottom);
    const int OW = conv2d_out_size(W, KW, stride, pad_left, pad_right);
    DIT_CHECK(OH > 0 && OW > 0 && stride > 0);
    const int64_t out_plane = (int64_t)OH * OW, in_plane = (int64_t)H * W;
    const int K = Cin * KH * KW;
    // out starts as the bias; sgemm then accumulates onto it (beta 1).
    #pragma omp parallel for collapse(2) schedule(static) if ((int64_t)B * Cout * out_plane > 65536)
    for (int b = 0; b < B; b++)
        for (int co = 0; co < Cout; co++) {
            float *o = out + ((int64_t)b * Cout + co) * out_plane;
            const float v = bias ? bias[co] : 0.0f;
            for (int64_t i = 0; i < out_plane; i++) o[i] = v;
        }
    if (KH == 1 && KW == 1 && stride == 1 && !pad_top && !pad_left && !pad_bottom && !pad_right) {
        for (int b = 0; b < B; b++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, (int)out_plane, Cin, 1.0f, weight, Cin,
                        x + (int64_t)b * Cin * in_plane, (int)in_plane, 1.0f, out + (int64_t)b * Cout * out_plane,
                        (int)out_plane);
        return;
    }
    int64_t band_rows = budget_floats / ((int64_t)K * OW);
    if (band_rows < 1) band_rows = 1;
    if (band_rows > OH) band_rows = OH;
    float *col = dit_malloc((size_t)(band_rows * OW * K) * sizeof *col);
    for (int b = 0; b < B; b++) {
        const float *xb = x + (int64_t)b * Cin * in_plane;
        float *ob = out + (int64_t)b * Cout * out_plane;
        for (int oy0 = 0; oy0 < OH; oy0 += (int)band_rows) {
            const int rows = OH - oy0 < band_rows ? OH - oy0 : (int)band_rows;
            im2col_band(col, xb, Cin, H, W, KH, KW, stride, pad_top, pad_left, OW, oy0, rows);
            const int N = rows * OW;
            // out[:, band] (Cout, N) += weight (Cout, K) @ col (K, N); rows of out are out_plane apart
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, N, K, 1.0f, weight, K, col, N, 1.0f,
                        ob + (int64_t)oy0 * OW, (int)out_plane);
        }
    }
    free(col);
}

void conv2d_forward(float *out, const float *x, const float *weight, const float *bias, int B, int Cin, int H,
                    int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom,
                    int pad_right) {
    conv2d_forward_budget(out, x, weight, bias, B, Cin, H, W, Cout, KH, KW, stride, pad_top, pad_left, pad_bottom,
                          pad_right, CONV_COLUMN_BUDGET_FLOATS);
}

void groupnorm_forward(float *y, const float *x, const float *gamma, const float *beta, int B, int C, int T,
                       int G, float eps, int silu) {
    DIT_CHECK(G > 0 && C % G == 0);
    const int per_group = C / G;
    const int64_t group_size = (int64_t)per_group * T;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const int64_t base = ((int64_t)b * C + (int64_t)g * per_group) * T;
            const float *xg = x + base;
            double sum = 0.0;
            for (int64_t i = 0; i < group_size; i++) sum += xg[i];
            const double mean = sum / (double)group_size;
            double sq = 0.0;
            for (int64_t i = 0; i < group_size; i++) {
                const double d = xg[i] - mean;
                sq += d * d;
            }
            const double rstd = 1.0 / sqrt(sq / (double)group_size + (double)eps);
            for (int c = 0; c < per_group; c++) {
                const int channel = g * per_group + c;
                // y = x * a + shift with a = rstd * gamma, shift = beta - mean * a (PyTorch's CPU kernel form)
                const float a = (float)(rstd * gamma[channel]);
                const float shift = (float)(beta[channel] - mean * rstd * gamma[channel]);
                const float *xc = xg + (int64_t)c * T;
                float *yc = y + base + (int64_t)c * T;
                if (silu) {
                    #pragma omp simd
                    for (int t = 0; t < T; t++) {
                        const float v = xc[t] * a + shift;
                        yc[t] = v / (1.0f + fast_expf(-v));
                    }
                } else {
                    #pragma omp simd
                    for (int t = 0; t < T; t++) yc[t] = xc[t] * a + shift;
                }
            }
        }
}

void upsample_nearest2x_forward(float *out, const float *x, int N, int H, int W) {
    #pragma omp parallel for schedule(static) if ((int64_t)N * H * W > 16384)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < H; i++) {
            const float *src = x + ((int64_t)n * H + i) * W;
            float *row = out + ((int64_t)n * 2 * H + 2 * i) * 2 * W;
            for (int j = 0; j < W; j++) row[2 * j] = row[2 * j + 1] = src[j];
            memcpy(row + 2 * W, row, (size_t)2 * W * sizeof *row);
        }
}

int64_t spatial_attention_scratch_floats(int T, int threads) {
    return (int64_t)SPATIAL_ATTENTION_BLOCK * T * (threads > 0 ? threads : 1);
}

void spatial_attention_forward(float *out, const float *q, const float *k, const float *v, float *scratch, int C,
                               int T) {
    const float scale = 1.0f / sqrtf((float)C);
    const int blocks = (T + SPATIAL_ATTENTION_BLOCK - 1) / SPATIAL_ATTENTION_BLOCK;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int blk = 0; blk < blocks; blk++) {
#ifdef _OPENMP
        float *scores = scratch + (int64_t)omp_get_thread_num() * SPATIAL_ATTENTION_BLOCK * T;
#else
        float *scores = scratch;
#endif
        const int t0 = blk * SPATIAL_ATTENTION_BLOCK;
        const int nb = T - t0 < SPATIAL_ATTENTION_BLOCK ? T - t0 : SPATIAL_ATTENTION_BLOCK;
        // scores (nb, T) = scale * q[:, t0:t0+nb]^T (nb, C) @ k (C, T)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nb, T, C, scale, q + t0, T, k, T, 0.0f, scores, T);
        for (int r = 0; r < nb; r++) {
            float *row = scores + (int64_t)r * T;
            float mx = row[0];
            for (int s = 1; s < T; s++) mx = row[s] > mx ? row[s] : mx;
            float sum = 0.0f;
            #pragma omp simd reduction(+ : sum)
            for (int s = 0; s < T; s++) {
                row[s] = fast_expf(row[s] - mx);
                sum += row[s];
            }
            const float inv = 1.0f / sum;
            for (int s = 0; s < T; s++) row[s] *= inv;
        }
        // out[:, t0:t0+nb] (C, nb) = v (C, T) @ scores^T (T, nb)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, nb, T, 1.0f, v, T, scores, T, 0.0f, out + t0, T);
    }
}
