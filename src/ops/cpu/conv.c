// The autoencoder's kernels (reference.md §4.4): conv2d by a direct AVX-512 kernel (stride 1) or banded
// im2col + OpenBLAS sgemm (docs/vae.md says why and how fast), GroupNorm with float64 statistics and an
// optional fused SiLU, nearest 2x upsampling, and single-head spatial attention over query blocks.
// Naive-loop oracles for all of them live in tests/test_vae.c.
#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/error.h"
#include "ops/conv.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/fast_exp.h"
#include "ops/ops.h"

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
    #pragma omp parallel for schedule(guided) if (K * N > 32768)
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

// The direct kernel is compiled for AVX-512 whatever the build's -march (AVX512_TARGET), and used only where
// CPUID finds it.
//
// Direct stride-1 convolution, no column buffer. The input is first copied zero-padded and row-interleaved,
// (H + pads, Cin, W + pads): the Cin rows a tap reads sit W + pads floats apart, where channel-major planes
// would be a multiple of 4 KB apart and fight over the same cache sets. A register block of DIRECT_CO output
// channels x DIRECT_V vectors of 16 output positions (24 zmm accumulators) then sums all Cin x KH x KW taps:
// one load of 16 inputs per vector and one broadcast weight per output channel per tap. Vectors never cross
// an output row: the last one of a row is stored masked, so any width works. Its loads are not masked (lanes
// past the row read on into the padded buffer, which has 16 floats of slack at its end, and are never stored):
// with masked loads GCC spilled the three input vectors to the stack and the kernel ran at half the rate on an
// Ice Lake Xeon (40 against 75-100 GFLOP/s on one core). The taps go ci-innermost over chunks
// of DIRECT_CI input channels, whose rows stay in L1 across the KH x KW taps. Chunks of 8/16/64 and groups of
// 1/4/16 blocks measured within the noise of 32 and 4 (single thread, 133-172 GFLOP/s on the VAE's shapes).
#define DIRECT_SLACK 16   // floats after the padded copy, for the unmasked loads of a row's last vector
#define DIRECT_CO 8
#define DIRECT_V 3
#define DIRECT_CI 32
#define DIRECT_GROUP 4

typedef struct {
    int oy, x0;          // output row, first output column
    __mmask16 lanes;     // valid lanes (0: an unused slot)
} direct_slot;

// padded (Hp, Cin, Wp), Hp = H + pad_top + pad_bottom, Wp = W + pad_left + pad_right, from x (Cin, H, W), or
// with upsample from x (Cin, H/2, W/2) repeated 2x2 (nearest).
static void pad_interleave(float *padded, const float *x, int upsample, int Cin, int H, int W, int pad_top,
                           int pad_left, int Hp, int Wp) {
    #pragma omp parallel for schedule(guided)
    for (int yp = 0; yp < Hp; yp++) {
        const int iy = yp - pad_top;
        for (int ci = 0; ci < Cin; ci++) {
            float *d = padded + ((int64_t)yp * Cin + ci) * Wp;
            if (iy < 0 || iy >= H) {
                memset(d, 0, (size_t)Wp * sizeof *d);
                continue;
            }
            memset(d, 0, (size_t)pad_left * sizeof *d);
            if (upsample) {
                const float *src = x + ((int64_t)ci * (H / 2) + iy / 2) * (W / 2);
                for (int j = 0; j < W / 2; j++) d[pad_left + 2 * j] = d[pad_left + 2 * j + 1] = src[j];
            } else {
                memcpy(d + pad_left, x + ((int64_t)ci * H + iy) * W, (size_t)W * sizeof *d);
            }
            memset(d + pad_left + W, 0, (size_t)(Wp - pad_left - W) * sizeof *d);
        }
    }
}

// Output channels [co, co + nco) (nco <= DIRECT_CO) at the DIRECT_V slots. The 24 accumulators are named
// variables, not an array, so that the compiler keeps them in registers; a block short of DIRECT_CO
// channels repeats its last channel's weights and stores only the first nco.
AVX512_TARGET static void direct_block(float *out, const float *padded, const float *w, const float *bias, const float *residual,
                         int nco, int Cin, int KH, int KW, int Wp, int64_t out_plane, int OW, const direct_slot *slot) {
    const int taps = KH * KW;
    const int64_t K = (int64_t)Cin * taps;
#define DIRECT_ZERO(j) __m512 a##j##0 = _mm512_setzero_ps(), a##j##1 = a##j##0, a##j##2 = a##j##0;
    DIRECT_ZERO(0) DIRECT_ZERO(1) DIRECT_ZERO(2) DIRECT_ZERO(3) DIRECT_ZERO(4) DIRECT_ZERO(5) DIRECT_ZERO(6)
    DIRECT_ZERO(7)
#undef DIRECT_ZERO
    const float *wrow[DIRECT_CO];
    for (int j = 0; j < DIRECT_CO; j++) wrow[j] = w + (j < nco ? j : nco - 1) * K;
    for (int c0 = 0; c0 < Cin; c0 += DIRECT_CI) {
        const int chunk = Cin - c0 < DIRECT_CI ? Cin - c0 : DIRECT_CI;
        for (int ky = 0; ky < KH; ky++)
            for (int kx = 0; kx < KW; kx++) {
                const float *s0 = padded + ((int64_t)(slot[0].oy + ky) * Cin + c0) * Wp + slot[0].x0 + kx;
                const float *s1 = padded + ((int64_t)(slot[1].oy + ky) * Cin + c0) * Wp + slot[1].x0 + kx;
                const float *s2 = padded + ((int64_t)(slot[2].oy + ky) * Cin + c0) * Wp + slot[2].x0 + kx;
                const int64_t tap = (int64_t)c0 * taps + ky * KW + kx;
                const float *w0 = wrow[0] + tap, *w1 = wrow[1] + tap, *w2 = wrow[2] + tap, *w3 = wrow[3] + tap;
                const float *w4 = wrow[4] + tap, *w5 = wrow[5] + tap, *w6 = wrow[6] + tap, *w7 = wrow[7] + tap;
                for (int ci = 0; ci < chunk; ci++) {
                    const __m512 x0 = _mm512_loadu_ps(s0), x1 = _mm512_loadu_ps(s1), x2 = _mm512_loadu_ps(s2);
                    const int at = ci * taps;
#define DIRECT_FMA(j)                                              \
    {                                                              \
        const __m512 wj = _mm512_set1_ps(w##j[at]);                \
        a##j##0 = _mm512_fmadd_ps(x0, wj, a##j##0);                \
        a##j##1 = _mm512_fmadd_ps(x1, wj, a##j##1);                \
        a##j##2 = _mm512_fmadd_ps(x2, wj, a##j##2);                \
    }
                    DIRECT_FMA(0) DIRECT_FMA(1) DIRECT_FMA(2) DIRECT_FMA(3) DIRECT_FMA(4) DIRECT_FMA(5)
                    DIRECT_FMA(6) DIRECT_FMA(7)
#undef DIRECT_FMA
                    s0 += Wp;
                    s1 += Wp;
                    s2 += Wp;
                }
            }
    }
    const __m512 acc[DIRECT_CO][DIRECT_V] = {{a00, a01, a02}, {a10, a11, a12}, {a20, a21, a22}, {a30, a31, a32},
                                             {a40, a41, a42}, {a50, a51, a52}, {a60, a61, a62}, {a70, a71, a72}};
    for (int j = 0; j < nco; j++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[j] : 0.0f);
        for (int v = 0; v < DIRECT_V; v++) {
            if (!slot[v].lanes) continue;
            const int64_t at = (int64_t)j * out_plane + (int64_t)slot[v].oy * OW + slot[v].x0;
            __m512 y = _mm512_add_ps(acc[j][v], b);
            if (residual) y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(slot[v].lanes, residual + at));
            _mm512_mask_storeu_ps(out + at, slot[v].lanes, y);
        }
    }
}

// One sample: out (Cout, OH, OW) = conv(padded) + bias (+ residual, same shape as out).
AVX512_TARGET static void conv2d_direct(float *out, const float *padded, const float *weight, const float *bias,
                          const float *residual, int Cin, int Cout, int KH, int KW, int Wp, int OH, int OW) {
    const int per_row = (OW + 15) / 16, slots = OH * per_row, tiles = (slots + DIRECT_V - 1) / DIRECT_V;
    const int co_blocks = (Cout + DIRECT_CO - 1) / DIRECT_CO, groups = (tiles + DIRECT_GROUP - 1) / DIRECT_GROUP;
    const int64_t out_plane = (int64_t)OH * OW, K = (int64_t)Cin * KH * KW;
    // Groups of DIRECT_GROUP tiles share each block of weights while it is in L2. Dynamic: on a shared
    // machine a descheduled thread's static share would stall the other at the barrier.
    #pragma omp parallel for schedule(dynamic, 1) if ((int64_t)tiles * co_blocks > 1)
    for (int g = 0; g < groups; g++) {
        const int t0 = g * DIRECT_GROUP, t1 = tiles - t0 < DIRECT_GROUP ? tiles : t0 + DIRECT_GROUP;
        for (int cb = 0; cb < co_blocks; cb++) {
            const int co = cb * DIRECT_CO, nco = Cout - co < DIRECT_CO ? Cout - co : DIRECT_CO;
            float *o = out + co * out_plane;
            const float *w = weight + co * K, *b = bias ? bias + co : NULL;
            const float *r = residual ? residual + co * out_plane : NULL;
            for (int t = t0; t < t1; t++) {
                direct_slot slot[DIRECT_V];
                for (int v = 0; v < DIRECT_V; v++) {
                    const int sl = t * DIRECT_V + v, x0 = sl % per_row * 16, lanes = OW - x0 < 16 ? OW - x0 : 16;
                    slot[v].oy = sl < slots ? sl / per_row : 0;
                    slot[v].x0 = sl < slots ? x0 : 0;
                    slot[v].lanes = sl < slots ? (__mmask16)((1u << lanes) - 1u) : 0;
                }
                direct_block(o, padded, w, b, r, nco, Cin, KH, KW, Wp, out_plane, OW, slot);
            }
        }
    }
}

// Output rows per im2col band: as many as fit the budget, at least one.
static int64_t column_band_rows(int H, int W, int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom,
                                int pad_right, int Cin, int64_t budget_floats) {
    const int OH = conv2d_out_size(H, KH, stride, pad_top, pad_bottom);
    const int OW = conv2d_out_size(W, KW, stride, pad_left, pad_right);
    int64_t band_rows = budget_floats / ((int64_t)Cin * KH * KW * (OW > 0 ? OW : 1));
    if (band_rows < 1) band_rows = 1;
    if (band_rows > OH) band_rows = OH;
    return band_rows;
}

static int is_plain_1x1(int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom, int pad_right) {
    return KH == 1 && KW == 1 && stride == 1 && !pad_top && !pad_left && !pad_bottom && !pad_right;
}

// The direct kernel takes stride-1 convs other than the plain 1x1 (one sgemm already).
static int uses_direct(int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom, int pad_right) {
    return cpu_path_active() >= CPU_PATH_AVX512 && stride == 1 &&
           !is_plain_1x1(KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right);
}

int64_t conv2d_workspace_floats(int Cin, int H, int W, int KH, int KW, int stride, int pad_top, int pad_left,
                                int pad_bottom, int pad_right) {
    if (uses_direct(KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right))
        return (int64_t)(H + pad_top + pad_bottom) * Cin * (W + pad_left + pad_right) + DIRECT_SLACK;
    if (is_plain_1x1(KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right)) return 0;
    return column_band_rows(H, W, KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right, Cin,
                            CONV_COLUMN_BUDGET_FLOATS) *
           conv2d_out_size(W, KW, stride, pad_left, pad_right) * Cin * KH * KW;
}

static dit_status conv2d_run(float *out, const float *x, const float *weight, const float *bias,
                             const float *residual, float *workspace, int upsample, int B, int Cin, int H, int W, int Cout, int KH, int KW,
                       int stride, int pad_top, int pad_left, int pad_bottom, int pad_right, int64_t budget_floats) {
    const int OH = conv2d_out_size(H, KH, stride, pad_top, pad_bottom);
    const int OW = conv2d_out_size(W, KW, stride, pad_left, pad_right);
    DIT_CHECK(OH > 0 && OW > 0 && stride > 0 && (!upsample || (H % 2 == 0 && W % 2 == 0)));
    const int64_t out_plane = (int64_t)OH * OW, in_plane = (int64_t)H * W;
    const int K = Cin * KH * KW;
    if (uses_direct(KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right)) {
        const int64_t padded_floats =
            conv2d_workspace_floats(Cin, H, W, KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right);
        const int Hp = H + pad_top + pad_bottom, Wp = W + pad_left + pad_right;
        float *padded = workspace ? workspace : dit_malloc((size_t)padded_floats * sizeof *padded);
        if (!padded) return DIT_ERR;
        for (int b = 0; b < B; b++) {
            pad_interleave(padded, x + (int64_t)b * Cin * (upsample ? in_plane / 4 : in_plane), upsample, Cin, H, W,
                           pad_top, pad_left, Hp, Wp);
            conv2d_direct(out + (int64_t)b * Cout * out_plane, padded, weight, bias,
                          residual ? residual + (int64_t)b * Cout * out_plane : NULL, Cin, Cout, KH, KW, Wp, OH, OW);
        }
        if (!workspace) free(padded);
        return DIT_OK;
    }
    float *upsampled = NULL;
    if (upsample) {
        upsampled = dit_malloc((size_t)(B * Cin * in_plane) * sizeof *upsampled);
        if (!upsampled) return DIT_ERR;
        upsample_nearest2x_forward(upsampled, x, B * Cin, H / 2, W / 2);
        x = upsampled;
    }
    // out starts as the bias (+ residual); sgemm then accumulates onto it (beta 1).
    #pragma omp parallel for collapse(2) schedule(guided) if ((int64_t)B * Cout * out_plane > 65536)
    for (int b = 0; b < B; b++)
        for (int co = 0; co < Cout; co++) {
            const int64_t at = ((int64_t)b * Cout + co) * out_plane;
            const float v = bias ? bias[co] : 0.0f;
            if (residual)
                for (int64_t i = 0; i < out_plane; i++) out[at + i] = v + residual[at + i];
            else
                for (int64_t i = 0; i < out_plane; i++) out[at + i] = v;
        }
    if (is_plain_1x1(KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right)) {
        for (int b = 0; b < B; b++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, (int)out_plane, Cin, 1.0f, weight, Cin,
                        x + (int64_t)b * Cin * in_plane, (int)in_plane, 1.0f, out + (int64_t)b * Cout * out_plane,
                        (int)out_plane);
        free(upsampled);
        return DIT_OK;
    }
    const int64_t band_rows =
        column_band_rows(H, W, KH, KW, stride, pad_top, pad_left, pad_bottom, pad_right, Cin, budget_floats);
    // the caller's workspace holds CONV_COLUMN_BUDGET_FLOATS' bands (conv2d_workspace_floats)
    const int own_col = !workspace || budget_floats != CONV_COLUMN_BUDGET_FLOATS;
    float *col = own_col ? dit_malloc((size_t)(band_rows * OW * K) * sizeof *col) : workspace;
    if (!col) {
        free(upsampled);
        return DIT_ERR;
    }
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
    if (own_col) free(col);
    free(upsampled);
    return DIT_OK;
}

dit_status conv2d_forward_budget(float *out, const float *x, const float *weight, const float *bias, int B, int Cin,
                                 int H, int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left,
                                 int pad_bottom, int pad_right, int64_t budget_floats) {
    return conv2d_run(out, x, weight, bias, NULL, NULL, 0, B, Cin, H, W, Cout, KH, KW, stride, pad_top, pad_left, pad_bottom,
               pad_right, budget_floats);
}

dit_status conv2d_forward(float *out, const float *x, const float *weight, const float *bias, int B, int Cin, int H,
                          int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom,
                          int pad_right) {
    return conv2d_run(out, x, weight, bias, NULL, NULL, 0, B, Cin, H, W, Cout, KH, KW, stride, pad_top, pad_left, pad_bottom,
               pad_right, CONV_COLUMN_BUDGET_FLOATS);
}

dit_status conv2d_forward_ex(float *out, const float *x, const float *weight, const float *bias,
                             const float *residual, float *workspace, int upsample, int B, int Cin, int H, int W,
                             int Cout, int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom,
                             int pad_right) {
    return conv2d_run(out, x, weight, bias, residual, workspace, upsample, B, Cin, H, W, Cout, KH, KW, stride, pad_top,
               pad_left, pad_bottom, pad_right, CONV_COLUMN_BUDGET_FLOATS);
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
            // float64 sums, reassociated into vector lanes (omp simd)
            double sum = 0.0;
            #pragma omp simd reduction(+ : sum)
            for (int64_t i = 0; i < group_size; i++) sum += xg[i];
            const double mean = sum / (double)group_size;
            double sq = 0.0;
            #pragma omp simd reduction(+ : sq)
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
                #pragma omp simd
                for (int t = 0; t < T; t++) yc[t] = xc[t] * a + shift;
                if (silu) silu_forward_serial(yc, yc, T);
            }
        }
}

void upsample_nearest2x_forward(float *out, const float *x, int N, int H, int W) {
    #pragma omp parallel for schedule(guided) if ((int64_t)N * H * W > 16384)
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

// ---- conv2d_backward (the classifier's training, src/models/classifier.c) ----------------------------------
// Per sample: col = im2col(x) (K, N), K = Cin KH KW in the weight's (ci, ky, kx) order, N = OH OW; then
// dweight += dout_b (Cout, N) @ col^T, dcol = weight^T (K, Cout) @ dout_b and dx_b = col2im(dcol).
// Samples go in fixed groups whose partial weight gradients are summed in group order, so the result does
// not depend on the thread count.
#define CONV_BACKWARD_GROUP 8

// col (K, OH * OW) from one sample x (Cin, H, W); padding positions are zero.
static void conv_backward_im2col(float *col, const float *x, int Cin, int H, int W, int KH, int KW, int stride,
                                 int pad_top, int pad_left, int OH, int OW) {
    for (int kk = 0; kk < Cin * KH * KW; kk++) {
        const int ci = kk / (KH * KW), ky = kk / KW % KH, kx = kk % KW;
        const float *plane = x + (int64_t)ci * H * W;
        float *dst = col + (int64_t)kk * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            const int iy = oy * stride - pad_top + ky;
            for (int ox = 0; ox < OW; ox++) {
                const int ix = ox * stride - pad_left + kx;
                dst[oy * OW + ox] = iy >= 0 && iy < H && ix >= 0 && ix < W ? plane[(int64_t)iy * W + ix] : 0.0f;
            }
        }
    }
}

// dx (Cin, H, W) = the adjoint of conv_backward_im2col applied to dcol (K, OH * OW) (overwritten).
static void conv_backward_col2im(float *dx, const float *dcol, int Cin, int H, int W, int KH, int KW, int stride,
                                 int pad_top, int pad_left, int OH, int OW) {
    memset(dx, 0, (size_t)Cin * H * W * sizeof *dx);
    for (int kk = 0; kk < Cin * KH * KW; kk++) {
        const int ci = kk / (KH * KW), ky = kk / KW % KH, kx = kk % KW;
        float *plane = dx + (int64_t)ci * H * W;
        const float *src = dcol + (int64_t)kk * OH * OW;
        for (int oy = 0; oy < OH; oy++) {
            const int iy = oy * stride - pad_top + ky;
            if (iy < 0 || iy >= H) continue;
            for (int ox = 0; ox < OW; ox++) {
                const int ix = ox * stride - pad_left + kx;
                if (ix >= 0 && ix < W) plane[(int64_t)iy * W + ix] += src[oy * OW + ox];
            }
        }
    }
}

dit_status conv2d_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                           const float *weight, int B, int Cin, int H, int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left,
                     int pad_bottom, int pad_right) {
    const int OH = conv2d_out_size(H, KH, stride, pad_top, pad_bottom);
    const int OW = conv2d_out_size(W, KW, stride, pad_left, pad_right);
    const int K = Cin * KH * KW, N = OH * OW;
    if (B <= 0 || N <= 0) {
        if (dx && B > 0) memset(dx, 0, (size_t)B * Cin * H * W * sizeof *dx);
        return DIT_OK;
    }
    if (dbias) {
        #pragma omp parallel for schedule(guided)
        for (int co = 0; co < Cout; co++) {
            double s = 0;
            for (int b = 0; b < B; b++) {
                const float *g = dout + ((int64_t)b * Cout + co) * N;
                for (int p = 0; p < N; p++) s += g[p];
            }
            dbias[co] += (float)s;
        }
    }
    const int groups = (B + CONV_BACKWARD_GROUP - 1) / CONV_BACKWARD_GROUP;
    float *partial = dweight ? dit_malloc((size_t)groups * Cout * K * sizeof(float)) : NULL;
    if (dweight && !partial) return DIT_ERR;
    int failed = 0;   // a thread's column buffer could not be allocated (its message is that thread's)
    #pragma omp parallel
    {
        float *col = dit_malloc((size_t)K * N * sizeof(float));
        if (!col) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp barrier
        #pragma omp for schedule(dynamic, 1)
        for (int g = 0; g < (failed ? 0 : groups); g++) {
            const int b1 = (g + 1) * CONV_BACKWARD_GROUP < B ? (g + 1) * CONV_BACKWARD_GROUP : B;
            for (int b = g * CONV_BACKWARD_GROUP; b < b1; b++) {
                const float *gb = dout + (int64_t)b * Cout * N;
                if (partial) {
                    conv_backward_im2col(col, x + (int64_t)b * Cin * H * W, Cin, H, W, KH, KW, stride, pad_top,
                                         pad_left, OH, OW);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cout, K, N, 1.0f, gb, N, col, N,
                                b == g * CONV_BACKWARD_GROUP ? 0.0f : 1.0f, partial + (int64_t)g * Cout * K, K);
                }
                if (dx) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, Cout, 1.0f, weight, K, gb, N, 0.0f,
                                col, N);
                    conv_backward_col2im(dx + (int64_t)b * Cin * H * W, col, Cin, H, W, KH, KW, stride, pad_top,
                                         pad_left, OH, OW);
                }
            }
        }
        free(col);
    }
    if (failed) {
        free(partial);
        return dit_set_error("out of memory allocating %zu bytes of convolution columns per thread",
                             (size_t)K * N * sizeof(float));
    }
    if (partial) {
        #pragma omp parallel for schedule(guided)
        for (int64_t i = 0; i < (int64_t)Cout * K; i++) {
            float s = dweight[i];
            for (int g = 0; g < groups; g++) s += partial[(int64_t)g * Cout * K + i];
            dweight[i] = s;
        }
        free(partial);
    }
    return DIT_OK;
}
