// Philox4x32-10 and Box-Muller normals (see rng.h). The round function and constants follow the paper
// and Random123's philox.h; tests/test_diffusion.c checks Random123's known-answer vectors (kat_vectors).
#include "base/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u   // multipliers of the two 32x32 -> 64 products
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u   // Weyl key increments (golden ratio, sqrt(3) - 1)
#define PHILOX_W1 0xBB67AE85u

void philox4x32_10(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round > 0) k0 += PHILOX_W0, k1 += PHILOX_W1;   // the key schedule bumps before rounds 2..10
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

// A uniform in the open interval (0, 1) from 64 random bits: the top 53 bits plus half an ulp, so
// u = (k + 0.5) / 2^53 with k in [0, 2^53): never 0 (log is finite) and never 1.
static double uniform_open(uint32_t hi, uint32_t lo) {
    uint64_t k = (((uint64_t)hi << 32) | lo) >> 11;
    return ((double)k + 0.5) * (1.0 / 9007199254740992.0);
}

void rng_normal_fill(float *dst, int64_t n, uint64_t seed, uint32_t sample_id, uint32_t step, uint32_t stream) {
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const int64_t blocks = (n + 1) / 2;
    const double two_pi = 6.283185307179586476925286766559;
#pragma omp parallel for schedule(guided) if (blocks > 4096)
    for (int64_t b = 0; b < blocks; b++) {
        const uint32_t ctr[4] = {(uint32_t)b, step, sample_id, stream};
        uint32_t w[4];
        philox4x32_10(w, ctr, key);
        double u1 = uniform_open(w[0], w[1]), u2 = uniform_open(w[2], w[3]);
        double r = sqrt(-2.0 * log(u1)), theta = two_pi * u2;
        dst[2 * b] = (float)(r * cos(theta));
        if (2 * b + 1 < n) dst[2 * b + 1] = (float)(r * sin(theta));
    }
}
