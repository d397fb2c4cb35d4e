// The lane mask of a 16-float (AVX-512) step that has `left` elements to go: all 16 lanes when left >= 16,
// the first `left` when fewer, none when left <= 0. For the masked loads and stores at the ends of rows.
#ifndef DIT_OPS_CPU_MASK16_H
#define DIT_OPS_CPU_MASK16_H

#include <immintrin.h>

static inline __mmask16 mask16(int left) {
    return left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1) : (__mmask16)0;
}

#endif
