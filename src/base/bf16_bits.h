// float32 <-> bf16 bit patterns: round to nearest, ties to even, a NaN kept a (quiet) NaN. Inline, so a file
// built for any instruction set (the AVX-512 kernels, the x86-64-v3 floor) compiles its own copy.
#ifndef DIT_BASE_BF16_BITS_H
#define DIT_BASE_BF16_BITS_H

#include <stdint.h>
#include <string.h>

static inline uint16_t bf16_bits_from_float(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // NaN stays a (quiet) NaN
    u += 0x7fffu + ((u >> 16) & 1);                                             // nearest, ties to even
    return (uint16_t)(u >> 16);
}

static inline float float_from_bf16_bits(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
