// The matrix-product kernels side by side on one shape: OpenBLAS sgemm (float32) and dit's bf16 GEMM on
// every path this CPU has (AMX, AVX512-BF16). Prints one JSON line per kernel: seconds (median) and GFLOP/s.
// Usage: bench_gemm M N K [repeats]   (out (M, N) = A (M, K) @ B (N, K)^T, as nn.Linear)
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "ops/bf16.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/blas_core.h"

int main(int argc, char **argv) {
    blas_use_best_kernels(argv);   // before any float32 product (ops/cpu/blas_core.h)
    if (argc < 4) {
        fprintf(stderr, "usage: bench_gemm M N K [repeats]\n");
        return 2;
    }
    const int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]), repeats = argc > 4 ? atoi(argv[4]) : 10;
    if (M < 1 || N < 1 || K < 1 || repeats < 1) {
        fprintf(stderr, "bench_gemm: sizes and repeats must be positive\n");
        return 2;
    }
    float *A = malloc((size_t)M * K * sizeof *A), *B = malloc((size_t)N * K * sizeof *B);
    float *C = malloc((size_t)M * N * sizeof *C);
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    double *times = malloc((size_t)(repeats + 1) * sizeof *times);
    const double flops = 2.0 * M * N * K;
    for (int r = 0; r <= repeats; r++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        times[r] = now_seconds() - t0;
    }
    double s = bench_median(times + 1, repeats);
    printf("{\"kernel\": \"sgemm\", \"M\": %d, \"N\": %d, \"K\": %d, \"seconds\": %.6f, \"gflops\": %.1f}\n", M, N, K, s,
           flops / s / 1e9);
    // Each bf16 path with gemm_bf16's copy of A in tiles (its layout) and in plain rows (the layout before).
    const cpu_path paths[] = {CPU_PATH_AMX, CPU_PATH_AMX, CPU_PATH_AVX512_BF16};
    const int rows_layout[] = {0, 1, 0};
    bf16_packed P = {0};
    for (int i = 0; i < 3; i++) {
        if (cpu_path_force(paths[i]) != 0) continue;
        gemm_bf16_use_row_layout(rows_layout[i]);
        bf16_pack(&P, B, N, K, K, 1);
        for (int r = 0; r <= repeats; r++) {
            double t0 = now_seconds();
            gemm_bf16(C, N, A, K, 1, &P, M, NULL);
            times[r] = now_seconds() - t0;
        }
        s = bench_median(times + 1, repeats);
        printf("{\"kernel\": \"bf16-%s%s\", \"M\": %d, \"N\": %d, \"K\": %d, \"seconds\": %.6f, \"gflops\": %.1f}\n",
               cpu_path_name(paths[i]), rows_layout[i] ? "-rows" : "", M, N, K, s, flops / s / 1e9);
    }
    gemm_bf16_use_row_layout(0);
    // The product alone, A already bf16 in tiles (as the model's products get it: written by the op before
    // them), on the best path: what the kernel and its epilogue cost without the conversion of A.
    const uint16_t *A16 = NULL, *At16 = NULL;
    if (cpu_path_force(cpu_path_best()) == 0 && cpu_path_best() >= CPU_PATH_AVX512_BF16 &&
        bf16_convert_both(A, M, K, &A16, &At16, NULL) == DIT_OK) {
        bf16_pack(&P, B, N, K, K, 1);
        const a_layout at = a_layout_tiles(P.Kp);
        for (int r = 0; r <= repeats; r++) {
            double t0 = now_seconds();
            gemm_bf16_a16(C, N, A16, &at, &P, M, NULL);
            times[r] = now_seconds() - t0;
        }
        s = bench_median(times + 1, repeats);
        printf("{\"kernel\": \"bf16-%s-a16\", \"M\": %d, \"N\": %d, \"K\": %d, \"seconds\": %.6f, \"gflops\": %.1f}\n",
               cpu_path_name(cpu_path_best()), M, N, K, s, flops / s / 1e9);
    }
    bf16_packed_free(&P);
    free(A); free(B); free(C); free(times);
    return 0;
}
