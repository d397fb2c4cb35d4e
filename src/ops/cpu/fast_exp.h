// A vectorisable expf for the pointwise ops (GELU, SiLU, softmax): glibc's expf/tanhf are scalar calls and
// cost more than the matrix products around them. Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2,
// then a degree-6 polynomial for exp(r): relative error below 2e-7 (tests/test_ops.c measures it).
#ifndef DIT_OPS_CPU_FAST_EXP_H
#define DIT_OPS_CPU_FAST_EXP_H

#include <stdint.h>
#include <string.h>

static inline float fast_expf(float x) {
    // Clamp so that 2^n stays a normal float; exp(-87.3) ~ 1e-38 and exp(88.7) ~ 3.4e38.
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    // n = round(x / ln2) by the 1.5 * 2^23 trick (round-to-nearest mode), which vectorises where floorf
    // would be a library call.
    const float round_magic = 12582912.0f;
    float n = (x * log2e + round_magic) - round_magic;
    float r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    // exp(r) ~ 1 + r + r^2/2! + ... + r^6/6!, Horner form
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;   // 2^n
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// fast_expf on 8 lanes (AVX2, the build's floor), the same operations in the same order, so each lane equals
// fast_expf of its input bit for bit. Written out because GCC cannot vectorise fast_expf's clamps by itself
// (float compares may trap) and, allowed to, computes the clamped branch for every lane and blends: that
// branch underflows to subnormals (v / (1 + e^88) in GELU) and each subnormal costs a microcode assist,
// which made GELU 10x slower than its arithmetic.
// gemm_f32.c's GELU epilogue repeats these operations on 16 lanes (AVX-512): change both together; a test
// (tests/test_ops.c, test_gemm_f32) compares the epilogue with gelu_tanh_forward bit for bit.
#ifdef __AVX2__
#include <immintrin.h>

static inline __m256 fast_exp8(__m256 x) {
    // max/min return the second operand when one is NaN: a NaN stays NaN, as in fast_expf.
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    const __m256 round_magic = _mm256_set1_ps(12582912.0f);
    const __m256 n = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), round_magic),
                                   round_magic);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693359375f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(-2.12194440e-4f)));
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(0.5f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
#endif

#endif
