// Dense layers through OpenBLAS sgemm (row-major, weights stored [out, in] as PyTorch's nn.Linear).
#include <cblas.h>

#include "ops/ops.h"

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N) {
    float beta = 0.0f;
    if (bias) {
        // Start from the bias and let sgemm accumulate onto it: one pass over out instead of two.
        #pragma omp parallel for schedule(guided) if ((int64_t)M * N > 65536)
        for (int m = 0; m < M; m++) {
            float *row = out + (int64_t)m * N;
            for (int n = 0; n < N; n++) row[n] = bias[n];
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, weight, K, beta, out, N);
}

// dinp (M, K) = dout @ weight (overwritten; skipped when NULL); dweight (N, K) += dout^T @ inp;
// dbias (N) += column sums of dout (skipped when NULL). Threads split the columns of dbias, so no two
// threads write the same element.
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int M, int K, int N) {
    if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, weight, K, 0.0f, dinp, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dweight, K);
    if (dbias) bias_backward(dbias, dout, M, N);
}

// dbias (N) += column sums of dout (M, N). Threads split the columns of dbias, so no two write the same element.
void bias_backward(float *dbias, const float *dout, int M, int N) {
    enum { COLS = 256 };
    #pragma omp parallel for schedule(guided) if ((int64_t)M * N > 65536)
    for (int start = 0; start < N; start += COLS) {
        const int end = start + COLS < N ? start + COLS : N;
        for (int m = 0; m < M; m++) {
            const float *row = dout + (int64_t)m * N;
            for (int n = start; n < end; n++) dbias[n] += row[n];
        }
    }
}
