// The autoencoder's bf16 path keeps its activations channels-last, (T = H W, C) float32 rows, so that a 3x3
// conv reads its input in place (conv_bf16.c) and writes rows the next layer reads without a transpose. Here:
// GroupNorm's statistics on channels-last rows, and the zero-padded bf16 grid a conv reads, built in one pass
// from the float32 rows with the norm's affine map, SiLU and the 2x nearest upsample folded in.
// Compiled with AVX512-BF16 enabled; only entered when the CPU has a bf16 path.
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "ops/bf16.h"
#include "ops/cpu/fast_exp512.h"
#include "ops/cpu/mask16.h"

// Rows summed in float32 before the sums move to the float64 totals: short runs keep the float32 error small.
// The runs are fixed blocks of rows, added in order, so the sums do not depend on the thread count.
enum { ROWS_PER_RUN = 32 };

// Per-channel float64 sums over all rows of d and d^2, d = x[t, c] - x[0, c] (the first row as a shift, so the
// float32 runs sum values of the size of the spread, not of the mean), in one pass.
// runs: scratch of 2 x (T / ROWS_PER_RUN rounded up) x C floats.
static void channel_moments(double *sum_d, double *sum_d2, float *runs, const float *x, int T, int C) {
    const int num_runs = (T + ROWS_PER_RUN - 1) / ROWS_PER_RUN;
    #pragma omp parallel for schedule(guided)
    for (int k = 0; k < num_runs; k++) {
        float *run = runs + (int64_t)k * 2 * C, *run2 = run + C;
        memset(run, 0, sizeof(float) * 2 * (size_t)C);
        const int t1 = (k + 1) * ROWS_PER_RUN < T ? (k + 1) * ROWS_PER_RUN : T;
        for (int t = k * ROWS_PER_RUN; t < t1; t++) {
            const float *row = x + (int64_t)t * C;
            for (int c = 0; c < C; c++) {
                const float d = row[c] - x[c];
                run[c] += d;
                run2[c] += d * d;
            }
        }
    }
    memset(sum_d, 0, sizeof(double) * (size_t)C);
    memset(sum_d2, 0, sizeof(double) * (size_t)C);
    for (int k = 0; k < num_runs; k++)
        for (int c = 0; c < C; c++) {
            sum_d[c] += runs[(int64_t)k * 2 * C + c];
            sum_d2[c] += runs[(int64_t)k * 2 * C + C + c];
        }
}

dit_status groupnorm_cl_affine(float *scale, float *shift, const float *x, int T, int C, int G, const float *gamma,
                               const float *beta, float eps) {
    DIT_CHECK(G > 0 && C % G == 0);
    const int per_group = C / G;
    const double count = (double)T * per_group;
    double *sum_d = dit_malloc(sizeof(double) * 2 * (size_t)C), *sum_d2 = sum_d ? sum_d + C : NULL;
    float *runs = dit_malloc(sizeof(float) * 2 * (size_t)((T + ROWS_PER_RUN - 1) / ROWS_PER_RUN) * C);
    if (!sum_d || !runs) {
        free(sum_d), free(runs);
        return DIT_ERR;
    }
    channel_moments(sum_d, sum_d2, runs, x, T, C);
    for (int g = 0; g < G; g++) {
        // the group's sums of x and x^2 from the shifted ones: x = d + s, s = x[0, c]
        double s1 = 0, s2 = 0;
        for (int c = g * per_group; c < (g + 1) * per_group; c++) {
            const double sc = x[c];
            s1 += sum_d[c] + T * sc;
            s2 += sum_d2[c] + 2 * sc * sum_d[c] + T * sc * sc;
        }
        const double mean = s1 / count, var = s2 / count - mean * mean;   // biased, as PyTorch
        const double rstd = 1.0 / sqrt((var > 0 ? var : 0) + (double)eps);
        for (int c = g * per_group; c < (g + 1) * per_group; c++) {
            scale[c] = (float)(rstd * gamma[c]);
            shift[c] = (float)(beta[c] - mean * rstd * gamma[c]);
        }
    }
    free(sum_d), free(runs);
    return DIT_OK;
}

// The grid of a pad-1 conv: lines W + 2 positions wide whose position (1 + y, 1 + x) holds the value of input
// position (y, x) for y < H, x < W (an input of H/2 x W/2 repeated 2 x 2 with upsample), zeros everywhere else up
// to conv3x3_padded_elems(C, H, W) elements: bf16 values in grid, or (grid NULL) float32 ones in grid32.
static void fill_grid(uint16_t *grid, float *grid32, const float *x, int C, int H, int W, int upsample,
                      const float *scale, const float *shift, int silu) {
    const int sw = upsample ? W / 2 : W, repeat = upsample ? 2 : 1, origin = 1, grid_w = W + 2;
    const size_t size = grid ? sizeof *grid : sizeof *grid32;
    char *bytes = grid ? (char *)grid : (char *)grid32;
    const int64_t line = (int64_t)grid_w * C, first = origin * line, last = (int64_t)(origin + H) * line;
    memset(bytes, 0, (size_t)first * size);   // the top border line
    memset(bytes + last * size, 0, (size_t)(conv3x3_padded_elems(C, H, W) - last) * size);   // bottom and tail
    #pragma omp parallel for schedule(guided)
    for (int sy = 0; sy < (upsample ? H / 2 : H); sy++) {
        const int64_t line_start = first + (int64_t)sy * repeat * line;
        char *dst_line = bytes + line_start * size;
        memset(dst_line, 0, (size_t)origin * C * size);   // the left border
        memset(dst_line + (int64_t)(origin + W) * C * size, 0, (size_t)(grid_w - origin - W) * C * size);
        for (int sx = 0; sx < sw; sx++) {
            const float *src = x + ((int64_t)sy * sw + sx) * C;
            const int64_t at = line_start + (int64_t)(sx * repeat + origin) * C;
            for (int c = 0; c < C; c += 16) {
                const __mmask16 mask = mask16(C - c);
                __m512 v = _mm512_maskz_loadu_ps(mask, src + c);
                if (scale)
                    v = _mm512_add_ps(_mm512_mul_ps(v, _mm512_maskz_loadu_ps(mask, scale + c)),
                                      _mm512_maskz_loadu_ps(mask, shift + c));
                if (silu)   // y / (1 + e^-y)
                    v = _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f),
                                                       fast_exp512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
                const __m256i h = grid ? (__m256i)_mm512_cvtneps_pbh(v) : _mm256_setzero_si256();
                for (int k = 0; k < repeat; k++) {
                    if (grid) _mm256_mask_storeu_epi16(grid + at + k * C + c, mask, h);
                    else _mm512_mask_storeu_ps(grid32 + at + k * C + c, mask, v);
                }
            }
        }
        if (upsample) memcpy(dst_line + line * size, dst_line, (size_t)line * size);
    }
}

void conv3x3_pad_cl_bf16(uint16_t *padded, const float *x, int C, int H, int W, int upsample, const float *scale,
                         const float *shift, int silu) {
    fill_grid(padded, NULL, x, C, H, W, upsample, scale, shift, silu);
}

void conv3x3_pad_cl_f32(float *padded, const float *x, int C, int H, int W, int upsample, const float *scale,
                        const float *shift, int silu) {
    fill_grid(NULL, padded, x, C, H, W, upsample, scale, shift, silu);
}

// Downsample2D's grid as four parity planes (see ops/bf16.h): input position (y, x) goes to plane
// (y % 2, x % 2), line y / 2, position x / 2; line OH and position OW of every plane are the zero padding.
void conv3x3_pad_cl_bf16_down(uint16_t *grid, const float *x, int C, int H, int W) {
    const int OH = H / 2, OW = W / 2, R = OW + 1;
    const int64_t line = (int64_t)R * C, plane = (int64_t)(OH + 1) * line;
    for (int p = 0; p < 4; p++) memset(grid + p * plane + OH * line, 0, (size_t)line * sizeof *grid);   // line OH
    memset(grid + 4 * plane, 0, (size_t)(conv3x3_padded_elems(C, H, W) - 4 * plane) * sizeof *grid);    // the tail
    #pragma omp parallel for schedule(guided)
    for (int y = 0; y < H; y++) {
        uint16_t *even = grid + (y % 2 * 2) * plane + (int64_t)(y / 2) * line, *odd = even + plane;
        memset(even + (int64_t)OW * C, 0, (size_t)C * sizeof *grid);   // position OW: the right padding
        memset(odd + (int64_t)OW * C, 0, (size_t)C * sizeof *grid);
        for (int ix = 0; ix < W; ix++) {
            const float *src = x + ((int64_t)y * W + ix) * C;
            uint16_t *dst = (ix % 2 ? odd : even) + (int64_t)(ix / 2) * C;
            for (int c = 0; c < C; c += 16) {
                const __mmask16 mask = mask16(C - c);
                _mm256_mask_storeu_epi16(dst + c, mask, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + c)));
            }
        }
    }
}
