// fast_expf (fast_exp.h) sixteen lanes at a time, for the kernels compiled with AVX-512 (the bf16 path's
// epilogues and softmax). The same range reduction and polynomial; the Horner steps use fused multiply-adds,
// so a lane may differ from fast_expf in the last bit.
#ifndef DIT_OPS_CPU_FAST_EXP512_H
#define DIT_OPS_CPU_FAST_EXP512_H

#include <immintrin.h>

// x = n ln 2 + r with n an integer and |r| <= ln 2 / 2 (ln 2 in two parts, so r is exact to float32): returns n.
static inline __m512 exp512_reduce(__m512 x, __m512 *r) {
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    *r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x));
    return n;
}

// e^r for |r| <= ln 2 / 2 by Taylor's polynomial from degree `from` (5 or 6) down, Horner's steps fused.
static inline __m512 exp512_poly(__m512 r, int from) {
    __m512 p = from == 6 ? _mm512_fmadd_ps(_mm512_set1_ps(1.0f / 720.0f), r, _mm512_set1_ps(1.0f / 120.0f))
                         : _mm512_set1_ps(1.0f / 120.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
}

static inline __m512 fast_exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 r;
    const __m512 n = exp512_reduce(x, &r);
    return _mm512_scalef_ps(exp512_poly(r, 6), n);   // p * 2^n
}

// e^x for x <= 0 to 2.4e-6 relative (40 float ulps): fast_exp512 with Taylor's degree 5 instead of 6 and no
// upper clamp. For the attention's softmax, whose bf16 P is rounded to 4e-3 (attention_bf16.c). The lower clamp
// stays: below -87 the value would be subnormal, and multiplies on subnormals take microcode assists.
static inline __m512 fast_exp512_nonpositive(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 r;
    const __m512 n = exp512_reduce(x, &r);
    return _mm512_scalef_ps(exp512_poly(r, 5), n);
}

// 1 / d for d >= 1: the 14-bit estimate and one Newton step (relative error about 2^-27, within an ulp of
// float32), a fraction of a division's cost.
static inline __m512 reciprocal512(__m512 d) {
    const __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

// sigmoid(x) = 1 / (1 + exp(-x)) (GELU-tanh takes it at x = 2u, SiLU at x = its input), with x taken as at least
// -80: there the value is 1.8e-35, still a normal float. Below about -87.3 it was subnormal, and every multiply
// that met it (the reciprocal's Newton step, GELU's v * s) took a microcode assist: on the AMX guest, fc1 of
// DiT-XL's shape with pre-activations spread wide enough to reach below about -9.6 ran its GELU epilogue five
// times slower (2.4 -> 12.9 ms the product). The clamp changes only values below 2e-35 in magnitude.
static inline __m512 sigmoid512(__m512 x) {
    const __m512 neg = _mm512_min_ps(_mm512_sub_ps(_mm512_setzero_ps(), x), _mm512_set1_ps(80.0f));
    return reciprocal512(_mm512_add_ps(_mm512_set1_ps(1.0f), fast_exp512(neg)));
}

// 2u = 2 sqrt(2/pi) (v + 0.044715 v^3): GELU-tanh's sigmoid argument, one way for the value and the slope.
static inline __m512 gelu_two_u512(__m512 v) {
    const __m512 v3 = _mm512_mul_ps(_mm512_mul_ps(v, v), v);
    return _mm512_mul_ps(_mm512_set1_ps(2.0f * 0.7978845608028654f), _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), v3, v));
}

// gelu_tanh(v) = v * sigmoid(2u), as elementwise.c computes it (which divides where this multiplies by a
// reciprocal: a lane may differ in the last bit or two).
static inline __m512 gelu_tanh512(__m512 v) { return _mm512_mul_ps(v, sigmoid512(gelu_two_u512(v))); }

// d gelu_tanh / dv = s + v s (1 - s) 2 sqrt(2/pi) (1 + 3 * 0.044715 v^2), given s = sigmoid(2u): the slope
// elementwise.c's gelu_tanh_backward multiplies by.
static inline __m512 gelu_tanh_slope512(__m512 v, __m512 s) {
    const __m512 one = _mm512_set1_ps(1.0f), k = _mm512_set1_ps(2.0f * 0.7978845608028654f);
    const __m512 dtwo_u = _mm512_mul_ps(k, _mm512_fmadd_ps(_mm512_set1_ps(3.0f * 0.044715f), _mm512_mul_ps(v, v), one));
    return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_mul_ps(v, s), _mm512_sub_ps(one, s)), dtwo_u, s);
}

static inline __m512 gelu_tanh_grad512(__m512 v) { return gelu_tanh_slope512(v, sigmoid512(gelu_two_u512(v))); }

// Both from one sigmoid: returns gelu_tanh_grad512(v), *value = gelu_tanh512(v), the same bits as each alone.
static inline __m512 gelu_tanh_grad_value512(__m512 v, __m512 *value) {
    const __m512 s = sigmoid512(gelu_two_u512(v));
    *value = _mm512_mul_ps(v, s);
    return gelu_tanh_slope512(v, s);
}

#endif
