// Where bf16_packed keeps B's elements, and one 64-byte row of K pairs written from two float32 vectors. For
// the files compiled with AVX512-BF16 that pack right-hand operands (gemm_bf16.c, norm_avx512.c).
#ifndef DIT_OPS_CPU_BF16_PAIRS_H
#define DIT_OPS_CPU_BF16_PAIRS_H

#include <immintrin.h>
#include <stdint.h>

// Element (n, k) of B lives at panel n/32, K block k/32, half (n%32)/16, pair (k%32)/2, column n%16, k%2
// (KB = Kp / 32 K blocks).
static inline int64_t packed_index(int KB, int n, int k) {
    return (((int64_t)(n >> 5) * KB + (k >> 5)) * 2 + ((n >> 4) & 1)) * 512 + ((k & 31) >> 1) * 32 + (n & 15) * 2 +
           (k & 1);
}

// Two runs of 16 bf16, [a | b], interleaved as pairs: dword j = (a[j], b[j]).
static inline __m512i bf16_interleave(__m512i both) {
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                                22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(interleave, both);
}

// r0 and r1 rounded to bf16 as pairs: dword j = (r0[j], r1[j]).
static inline __m512i bf16_pairs_of(__m512 r0, __m512 r1) {
    return bf16_interleave((__m512i)_mm512_cvtne2ps_pbh(r1, r0));   // [r0 as 16 bf16 | r1 as 16 bf16]
}

// Columns n0 .. n0 + 15 (n0 a multiple of 16) of B's rows k and k + 1 (k even), given as r0 = B[n0.., k] and
// r1 = B[n0.., k + 1]: rounded to bf16 and interleaved into their pair row.
static inline void store_pair_row(uint16_t *d, int KB, int n0, int k, __m512 r0, __m512 r1) {
    _mm512_storeu_si512(d + packed_index(KB, n0, k), bf16_pairs_of(r0, r1));
}

#endif
