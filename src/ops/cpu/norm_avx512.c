// layernorm_modulate_forward and _backward for the bf16 path: the same functions as norm.c's (LayerNorm
// without affine, eps 1e-6, then modulate), with the row sums in float32 across sixteen lanes instead of one
// double. Their relative error (~1e-7 D^0.5) is far below the bf16 rounding of the products around them;
// the fp32 path keeps norm.c's exact versions. Compiled with AVX-512; only called on a bf16 path.
#include <immintrin.h>
#include <math.h>

#include "base/error.h"
#include "base/threads.h"
#include "ops/bf16.h"
#include "ops/cpu/bf16_pairs.h"
#include "ops/cpu/mask16.h"
#include "ops/dispatch.h"

// xhat = (x - mean) rstd for the lanes of k (x at p), the forward's and the backward's normalised values.
static inline __m512 xhat16(__mmask16 k, const float *p, __m512 mean, __m512 rstd) {
    return _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, p), mean), rstd);
}

// y = xhat (1 + scale) + shift for the lanes of k (x, shift, scale at p, sh, sc).
static inline __m512 modulate16(__mmask16 k, const float *p, const float *sh, const float *sc, __m512 mean,
                                __m512 rstd) {
    const __m512 gain = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_maskz_loadu_ps(k, sc));
    return _mm512_fmadd_ps(xhat16(k, p, mean, rstd), gain, _mm512_maskz_loadu_ps(k, sh));
}

// y[row, d0 .. d0 + 15] of layernorm_modulate_forward_avx512 from the row's statistics (zeros past D): the same
// function of the same values, so the same bits.
static inline __m512 modulated16(const modulated_rows *in, int64_t row, int d0) {
    const __mmask16 k = mask16(in->D - d0);
    const int64_t b = row / in->T;
    return _mm512_maskz_mov_ps(k, modulate16(k, in->x + row * in->D + d0, in->shift + b * in->row_stride + d0,
                                             in->scale + b * in->row_stride + d0, _mm512_set1_ps(in->mean[row]),
                                             _mm512_set1_ps(in->rstd[row])));
}

dit_status layernorm_modulate_pack_avx512(bf16_packed *dst, const modulated_rows *in) {
    const int M = in->B * in->T;
    DIT_TRY(bf16_packed_reserve(dst, in->D, M));
    const int KB = dst->Kp / 32, Np = dst->Np;
    uint16_t *d = dst->data;
    #pragma omp parallel for schedule(guided)
    for (int k = 0; k < dst->Kp; k += 2)   // token rows k and k + 1 (zeros past M)
        for (int n0 = 0; n0 < Np; n0 += 16)
            store_pair_row(d, KB, n0, k, k < M ? modulated16(in, k, n0) : _mm512_setzero_ps(),
                           k + 1 < M ? modulated16(in, k + 1, n0) : _mm512_setzero_ps());
    return DIT_OK;
}

void layernorm_modulate_forward_avx512(float *y, uint16_t *y16, int kp, float *mean, float *rstd, const float *x,
                                       const float *shift, const float *scale, int row_stride, int B, int T, int D) {
    const a_layout tiles = a_layout_tiles(kp);
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const int64_t row = (int64_t)b * T + t;
            const float *xr = x + row * D, *sh = shift + (int64_t)b * row_stride, *sc = scale + (int64_t)b * row_stride;
            float *yr = y16 ? NULL : y + row * D;
            __m512 sum = _mm512_setzero_ps();
            for (int d = 0; d < D; d += 16) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask16(D - d), xr + d));
            const float mu = _mm512_reduce_add_ps(sum) / (float)D;
            const __m512 m = _mm512_set1_ps(mu);
            __m512 sq = _mm512_setzero_ps();
            for (int d = 0; d < D; d += 16) {
                const __mmask16 k = mask16(D - d);
                const __m512 c = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, xr + d), m);
                sq = _mm512_fmadd_ps(c, c, sq);
            }
            const float rs = 1.0f / sqrtf(_mm512_reduce_add_ps(sq) / (float)D + 1e-6f);
            const __m512 r = _mm512_set1_ps(rs);
            for (int d = 0; d < D; d += 16) {
                const __mmask16 k = mask16(D - d);
                const __m512 v = modulate16(k, xr + d, sh + d, sc + d, m, r);
                if (y16)   // the rounding a product applies to y (gemm_bf16.c pack_a_rows), zeros past D
                    _mm256_storeu_si256((__m256i *)(y16 + a_offset(&tiles, (int)row, d)),
                                        (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_mov_ps(k, v)));
                else
                    _mm512_mask_storeu_ps(yr + d, k, v);
            }
            if (y16)
                for (int d = (D + 15) / 16 * 16; d < kp; d += 16)
                    _mm256_storeu_si256((__m256i *)(y16 + a_offset(&tiles, (int)row, d)), _mm256_setzero_si256());
            if (mean) mean[row] = mu;
            if (rstd) rstd[row] = rs;
        }
    }
}

// One row of the backward: dxr += rstd (g - mean(g) - xhat mean(g xhat)), g = dy (1 + scale), xhat = (x - mean)
// rstd; with dsh, dsc (not NULL) the row's dy and dy xhat also added to them, while the row is in L1.
static inline void row_backward(float *dxr, float *dsh, float *dsc, const float *dyr, const float *xr, const float *sc,
                                float mean, float rstd, int D) {
    const __m512 m = _mm512_set1_ps(mean), r = _mm512_set1_ps(rstd), one = _mm512_set1_ps(1.0f);
    __m512 sum_g = _mm512_setzero_ps(), sum_gx = _mm512_setzero_ps();
    for (int d = 0; d < D; d += 16) {
        const __mmask16 k = mask16(D - d);
        const __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dyr + d), _mm512_add_ps(one, _mm512_maskz_loadu_ps(k, sc + d)));
        const __m512 xhat = xhat16(k, xr + d, m, r);
        sum_g = _mm512_add_ps(sum_g, g);   // masked lanes: g = 0
        sum_gx = _mm512_fmadd_ps(g, xhat, sum_gx);
    }
    const __m512 mean_g = _mm512_set1_ps(_mm512_reduce_add_ps(sum_g) / (float)D);
    const __m512 mean_gx = _mm512_set1_ps(_mm512_reduce_add_ps(sum_gx) / (float)D);
    for (int d = 0; d < D; d += 16) {
        const __mmask16 k = mask16(D - d);
        const __m512 dyv = _mm512_maskz_loadu_ps(k, dyr + d);
        const __m512 g = _mm512_mul_ps(dyv, _mm512_add_ps(one, _mm512_maskz_loadu_ps(k, sc + d)));
        const __m512 xhat = xhat16(k, xr + d, m, r);
        const __m512 centred = _mm512_sub_ps(_mm512_sub_ps(g, mean_g), _mm512_mul_ps(xhat, mean_gx));
        _mm512_mask_storeu_ps(dxr + d, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dxr + d), _mm512_mul_ps(r, centred)));
        if (dsh) {
            _mm512_mask_storeu_ps(dsh + d, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dsh + d), dyv));
            _mm512_mask_storeu_ps(dsc + d, k, _mm512_fmadd_ps(dyv, xhat, _mm512_maskz_loadu_ps(k, dsc + d)));
        }
    }
}

void layernorm_modulate_backward_avx512(float *dx, float *dshift, float *dscale, const float *dy, const float *x,
                                        const float *mean, const float *rstd, const float *scale, int row_stride,
                                        int B, int T, int D) {
    if (B >= dit_max_threads()) {
        // a sample per thread: dshift and dscale summed from each row while it is in L1 (in row order: the same
        // sums, bit for bit, as the pass over columns below), so x and dy are read from memory once, not twice
        #pragma omp parallel for schedule(dynamic, 1)
        for (int b = 0; b < B; b++) {
            float *dsh = dshift + (int64_t)b * row_stride, *dsc = dscale + (int64_t)b * row_stride;
            for (int d = 0; d < D; d++) dsh[d] = 0.0f, dsc[d] = 0.0f;
            for (int64_t row = (int64_t)b * T; row < (int64_t)(b + 1) * T; row++)
                row_backward(dx + row * D, dsh, dsc, dy + row * D, x + row * D, scale + (int64_t)b * row_stride,
                             mean[row], rstd[row], D);
        }
        return;
    }
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const int64_t row = (int64_t)b * T + t;
            row_backward(dx + row * D, NULL, NULL, dy + row * D, x + row * D, scale + (int64_t)b * row_stride,
                         mean[row], rstd[row], D);
        }
    // dshift = sum_t dy, dscale = sum_t dy xhat, per sample, columns in blocks over the threads
    enum { COLS = 64 };
    const int blocks = (D + COLS - 1) / COLS;
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++) {
        for (int blk = 0; blk < blocks; blk++) {
            const int start = blk * COLS, end = start + COLS < D ? start + COLS : D;
            float *dsh = dshift + (int64_t)b * row_stride, *dsc = dscale + (int64_t)b * row_stride;
            for (int d = start; d < end; d += 16) {
                const __mmask16 k = mask16(end - d);
                __m512 sh = _mm512_setzero_ps(), sc = _mm512_setzero_ps();
                for (int t = 0; t < T; t++) {
                    const int64_t row = (int64_t)b * T + t;
                    const __m512 dyv = _mm512_maskz_loadu_ps(k, dy + row * D + d);
                    const __m512 xhat =
                        xhat16(k, x + row * D + d, _mm512_set1_ps(mean[row]), _mm512_set1_ps(rstd[row]));
                    sh = _mm512_add_ps(sh, dyv);
                    sc = _mm512_fmadd_ps(dyv, xhat, sc);
                }
                _mm512_mask_storeu_ps(dsh + d, k, sh);
                _mm512_mask_storeu_ps(dsc + d, k, sc);
            }
        }
    }
}
