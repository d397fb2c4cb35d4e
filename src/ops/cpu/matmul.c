// Dense layers through OpenBLAS sgemm (row-major, weights stored [out, in] as PyTorch's nn.Linear).
#include <cblas.h>

#include "ops/ops.h"

void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N) {
    float beta = 0.0f;
    if (bias) {
        // Start from the bias and let sgemm accumulate onto it: one pass over out instead of two.
        #pragma omp parallel for schedule(static) if ((int64_t)M * N > 65536)
        for (int m = 0; m < M; m++) {
            float *row = out + (int64_t)m * N;
            for (int n = 0; n < N; n++) row[n] = bias[n];
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, weight, K, beta, out, N);
}
