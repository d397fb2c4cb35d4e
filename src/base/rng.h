// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers:
// as easy as 1, 2, 3", SC 2011; Random123) and standard normals from it. Every value is a pure function
// of (seed, sample id, step, stream, element index), so noise never depends on batching or threads.
#ifndef DIT_BASE_RNG_H
#define DIT_BASE_RNG_H

#include <stdint.h>

// Streams used by the samplers (src/diffusion/sample.c); the CLI may use others from 16 up.
enum { RNG_STREAM_INITIAL = 0, RNG_STREAM_STEP = 1 };

// philox4x32_10: out = Philox4x32 with 10 rounds of counter ctr under key (Random123's philox4x32_R(10, ...)).
void philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

// rng_normal_fill: dst[i] ~ N(0, 1) for i = 0..n-1 (float32, rounded from float64).
// key = (low, high 32 bits of seed); counter = (i / 2, step, sample_id, stream). One Philox block gives
// two uniforms u1 = ((w0:w1) >> 11 + 0.5) / 2^53 and u2 from (w2:w3), both in (0, 1), and Box-Muller
// in float64 turns them into dst[2b] = r cos(2 pi u2), dst[2b+1] = r sin(2 pi u2), r = sqrt(-2 ln u1).
// n < 2^33. Parallel over blocks with OpenMP; the result does not depend on the thread count.
void rng_normal_fill(float *dst, int64_t n, uint64_t seed, uint32_t sample_id, uint32_t step, uint32_t stream);

#endif
