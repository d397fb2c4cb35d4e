// The machine's matrix-product rate, measured: what `dit info --hw` prints and what the training log's MFU
// divides by. One square-ish product, the best of a few runs after a warm-up; and one core's bf16 rate on each
// CPU the process may run on (cores of a virtual machine or a hybrid CPU need not run alike).
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "dit.h"
#include "ops/bf16.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/dispatch.h"
#include "ops/ops.h"
#include "ops/peak.h"

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
        } else if (ops_fp32_linear_is_ours()) {   // what the model's fp32 linear layers run
            if (gemm_f32_linear(C, A, B, NULL, M, K, N, NULL) != DIT_OK) {
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

// The calling thread's bf16 product rate on A16 (tiles) @ P^T: the best of five runs of 8 products after a
// warm-up; 0 when a product fails.
static double bf16_product_gflops(float *C, const uint16_t *A16, const bf16_packed *P, int M) {
    enum { REPEATS = 8 };
    const a_layout at = a_layout_tiles(P->Kp);
    double best = 0;
    for (int r = 0; r < 6; r++) {
        const double t0 = now_seconds();
        for (int i = 0; i < REPEATS; i++)
            if (gemm_bf16_a16_serial(C, P->N, A16, &at, P, M, NULL) != DIT_OK) return 0;
        const double rate = 2.0 * M * P->N * P->K * REPEATS / (now_seconds() - t0) / 1e9;
        if (r > 0 && rate > best) best = rate;
    }
    return best;
}

int measure_cpu_bf16_gflops(int *cpus, double *rates, int max_cpus) {
    enum { M = 256, N = 256, K = 512 };
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return 0;
    // the operands are made before the thread is pinned: their conversions may start OpenMP threads, which
    // would inherit the pinning
    float *A = dit_malloc((size_t)M * K * sizeof *A), *B = dit_malloc((size_t)N * K * sizeof *B);
    float *C = dit_malloc((size_t)M * N * sizeof *C);
    bf16_packed P = {0};
    const uint16_t *A16 = NULL, *unused = NULL;
    int n = 0;
    if (A && B && C) {
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
        if (bf16_pack(&P, B, N, K, K, 1) == DIT_OK && bf16_convert_both(A, M, K, &A16, &unused, NULL) == DIT_OK) {
            for (int cpu = 0; cpu < CPU_SETSIZE && n < max_cpus; cpu++) {
                if (!CPU_ISSET(cpu, &allowed)) continue;
                cpu_set_t one;
                CPU_ZERO(&one);
                CPU_SET(cpu, &one);
                if (sched_setaffinity(0, sizeof one, &one) != 0) continue;
                cpus[n] = cpu;
                rates[n++] = bf16_product_gflops(C, A16, &P, M);
            }
            sched_setaffinity(0, sizeof allowed, &allowed);
        }
    }
    bf16_packed_free(&P);
    free(A); free(B); free(C);
    return n;
}
