// Sixteen rows of sixteen float32 values rounded to bf16 into the two left-operand layouts at once (rows, and
// transposed), with their column sums: the conversion of a linear backward's dout (gemm_bf16.c) and of the
// attention's d qkv made in place of it (attention_bf16.c). Include only from files compiled with AVX512-BF16.
#ifndef DIT_OPS_CPU_CONVERT16_H
#define DIT_OPS_CPU_CONVERT16_H

#include <immintrin.h>
#include <stdint.h>

#include "ops/bf16.h"
#include "ops/cpu/bf16_pairs.h"

// r[0] + ... + r[15], pairwise (a fixed order).
static inline __m512 sum_of_16(const __m512 r[16]) {
    __m512 s[8];
    for (int i = 0; i < 8; i++) s[i] = _mm512_add_ps(r[i], r[i + 8]);
    for (int w = 4; w >= 1; w /= 2)
        for (int i = 0; i < w; i++) s[i] = _mm512_add_ps(s[i], s[i + w]);
    return s[0];
}

// Sixteen rows of 16 bf16 values, as pairs: dword j of pairs[p] holds (row 2p, row 2p + 1) of column j. Out:
// column j's 16 values (rows 0 .. 15) in the 256-bit half j / 4 % 2 of cols[(j / 8) * 4 + j % 4]
// (cols[c] = columns c, c + 4 | cols[4 + c] = columns 8 + c, 12 + c, c < 4). 24 shuffles instead of the 64 of a
// float32 16 x 16 transpose.
static inline void transpose_pairs_8x16(const __m512i pairs[8], __m512i cols[8]) {
    __m512i x[2][4];
    for (int g = 0; g < 2; g++) {   // rows 8g .. 8g + 7: per 128-bit lane l, column 4 l + c in x[g][c]
        const __m512i *w = pairs + 4 * g;
        const __m512i a0 = _mm512_unpacklo_epi32(w[0], w[1]), a1 = _mm512_unpackhi_epi32(w[0], w[1]);
        const __m512i a2 = _mm512_unpacklo_epi32(w[2], w[3]), a3 = _mm512_unpackhi_epi32(w[2], w[3]);
        x[g][0] = _mm512_unpacklo_epi64(a0, a2), x[g][1] = _mm512_unpackhi_epi64(a0, a2);
        x[g][2] = _mm512_unpacklo_epi64(a1, a3), x[g][3] = _mm512_unpackhi_epi64(a1, a3);
    }
    const __m512i lanes01 = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), lanes23 = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    for (int c = 0; c < 4; c++) {   // rows 0-7 of a column from x[0], rows 8-15 from x[1]
        cols[c] = _mm512_permutex2var_epi64(x[0][c], lanes01, x[1][c]);
        cols[4 + c] = _mm512_permutex2var_epi64(x[0][c], lanes23, x[1][c]);
    }
}

// Sixteen rows r[0..15] of sixteen columns (source rows m0.., columns n0..) rounded to bf16 into rows16 (rows m,
// K = columns n) and, transposed in registers as bf16 pairs, into cols16 (rows n, K = source rows m), each
// skipped when NULL; their sums over the sixteen rows, pairwise, to sums[0..15] (if not NULL).
static inline void convert_16x16(const __m512 r[16], uint16_t *rows16, const a_layout *at_rows, uint16_t *cols16,
                                 const a_layout *at_cols, int m0, int n0, float *sums) {
    if (sums) _mm512_storeu_ps(sums, sum_of_16(r));
    __m512i pairs[8], cols[8];
    for (int p = 0; p < 8; p++) {
        if (rows16) {
            const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(r[2 * p + 1], r[2 * p]);   // [row 2p | row 2p + 1]
            _mm256_storeu_si256((__m256i *)(rows16 + a_offset(at_rows, m0 + 2 * p, n0)), _mm512_castsi512_si256(both));
            _mm256_storeu_si256((__m256i *)(rows16 + a_offset(at_rows, m0 + 2 * p + 1, n0)),
                                _mm512_extracti64x4_epi64(both, 1));
        }
        if (cols16) pairs[p] = bf16_pairs_of(r[2 * p], r[2 * p + 1]);
    }
    if (!cols16) return;
    transpose_pairs_8x16(pairs, cols);
    for (int c = 0; c < 8; c++) {   // cols[c] holds columns j0 and j0 + 4
        const int j0 = (c >> 2) * 8 + (c & 3);
        _mm256_storeu_si256((__m256i *)(cols16 + a_offset(at_cols, n0 + j0, m0)), _mm512_castsi512_si256(cols[c]));
        _mm256_storeu_si256((__m256i *)(cols16 + a_offset(at_cols, n0 + j0 + 4, m0)), _mm512_extracti64x4_epi64(cols[c], 1));
    }
}

// A 32 x 32 block (rows m0.., columns n0.., both multiples of 32: v[r][h] = columns n0 + 16 h .. of row m0 + r)
// converted as convert_16x16 does its four quarters, with the column sums of each 16-row half to
// sums_top[0..31] and sums_bottom[0..31]; but rows16 and cols16 (both a_layout_tiles, 64-byte aligned) are
// written through a 4 KB staging copy in L1, each as one 2 KB run of whole cache lines stored past the caches
// (the operands are written once here and read by a later product, after more data than the caches hold).
// The caller issues _mm_sfence() before the operands are read.
static inline void convert_32x32_streamed(const __m512 v[32][2], uint16_t *rows16, const a_layout *at_rows,
                                          uint16_t *cols16, const a_layout *at_cols, int m0, int n0, float *sums_top,
                                          float *sums_bottom) {
    uint16_t stage_rows[1024] __attribute__((aligned(64))), stage_cols[1024] __attribute__((aligned(64)));
    const a_layout local = a_layout_tiles(32);   // a 32 x 32 block: two 16-row tiles, 2 KB in a row
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 2; c++) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = v[h * 16 + i][c];
            convert_16x16(r, stage_rows, &local, stage_cols, &local, h * 16, c * 16,
                          (h ? sums_bottom : sums_top) + c * 16);
        }
    __m512i *rows_out = (__m512i *)(rows16 + a_offset(at_rows, m0, n0)), *cols_out = (__m512i *)(cols16 + a_offset(at_cols, n0, m0));
    for (int i = 0; i < 32; i++) {
        _mm512_stream_si512(rows_out + i, _mm512_load_si512(stage_rows + 32 * i));
        _mm512_stream_si512(cols_out + i, _mm512_load_si512(stage_cols + 32 * i));
    }
}

#endif
