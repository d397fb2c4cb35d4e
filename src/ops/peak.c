// The machine's matrix-product rate, measured: what `dit info --hw` prints and what the training log's MFU
// divides by. One square-ish product, the best of a few runs after a warm-up.
#include <stdlib.h>
#include <time.h>

#include "base/error.h"
#include "dit.h"
#include "ops/bf16.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

double dit_measure_gemm_gflops(dit_precision precision, int M, int N, int K) {
    if (!dit_compute_path(precision) || M <= 0 || N <= 0 || K <= 0) return 0.0;
    const int bf16 = dit_precision_resolve(precision) == DIT_PRECISION_BF16;
    float *A = dit_xmalloc((size_t)M * K * sizeof *A), *B = dit_xmalloc((size_t)N * K * sizeof *B);
    float *C = dit_xmalloc((size_t)M * N * sizeof *C);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    bf16_packed P = {0};
    if (bf16) bf16_pack(&P, B, N, K, K, 1);   // weights are packed once at load: not timed
    double best = 0;
    for (int r = 0; r < 6; r++) {
        const double t0 = now_seconds();
        if (bf16) gemm_bf16(C, N, A, K, 1, &P, M, NULL);
        else linear_forward(C, A, B, NULL, M, K, N);
        const double dt = now_seconds() - t0;
        const double rate = 2.0 * M * N * K / dt / 1e9;
        if (r > 0 && rate > best) best = rate;
    }
    bf16_packed_free(&P);
    free(A); free(B); free(C);
    return best;
}
