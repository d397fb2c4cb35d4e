// The machine's matrix-product rate, measured: what `dit info --hw` prints and what the training log's MFU
// divides by. One square-ish product, the best of a few runs after a warm-up.
#include <stdlib.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "dit.h"
#include "ops/bf16.h"
#include "ops/dispatch.h"
#include "ops/ops.h"

double dit_measure_gemm_gflops(dit_precision precision, int M, int N, int K) {
    if (!dit_compute_path(precision) || M <= 0 || N <= 0 || K <= 0) return 0.0;
    const int bf16 = dit_precision_resolve(precision) == DIT_PRECISION_BF16;
    float *A = dit_malloc((size_t)M * K * sizeof *A), *B = dit_malloc((size_t)N * K * sizeof *B);
    float *C = dit_malloc((size_t)M * N * sizeof *C);
    if (!A || !B || !C) {
        free(A), free(B), free(C);
        return 0.0;
    }
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    bf16_packed P = {0};
    // weights are packed once at load: not timed
    const dit_status packed = bf16 ? bf16_pack(&P, B, N, K, K, 1) : DIT_OK;
    double best = 0;
    for (int r = 0; packed == DIT_OK && r < 6; r++) {
        const double t0 = now_seconds();
        if (bf16) {
            if (gemm_bf16(C, N, A, K, 1, &P, M, NULL) != DIT_OK) {
                best = 0;
                break;
            }
        } else {
            linear_forward(C, A, B, NULL, M, K, N);
        }
        const double dt = now_seconds() - t0;
        const double rate = 2.0 * M * N * K / dt / 1e9;
        if (r > 0 && rate > best) best = rate;
    }
    bf16_packed_free(&P);
    free(A); free(B); free(C);
    return best;
}
