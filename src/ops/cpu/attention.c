// Multi-head self-attention of timm's Attention (no qk-norm, no dropout): per (batch, head), one T x T score
// block in the calling thread's scratch, two sgemm calls and a row softmax. Memory: T*T floats per thread.
#include <cblas.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops/cpu/fast_exp.h"
#include "ops/ops.h"

int64_t attention_scratch_floats(int T, int threads) { return (int64_t)T * T * (threads > 0 ? threads : 1); }

static void softmax_rows(float *s, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *row = s + (int64_t)r * cols;
        float mx = row[0];
        for (int c = 1; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
        for (int c = 0; c < cols; c++) row[c] = fast_expf(row[c] - mx);
        float sum = 0.0f;
        for (int c = 0; c < cols; c++) sum += row[c];
        float inv = 1.0f / sum;
        for (int c = 0; c < cols; c++) row[c] *= inv;
    }
}

void attention_forward(float *out, const float *qkv, float *scratch, int B, int T, int D, int H) {
    const int hd = D / H;
    const float scale = 1.0f / sqrtf((float)hd);
    const int ld = 3 * D;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
#ifdef _OPENMP
            float *scores = scratch + (int64_t)omp_get_thread_num() * T * T;
#else
            float *scores = scratch;
#endif
            const float *q = qkv + (int64_t)b * T * ld + h * hd;
            const float *k = q + D;
            const float *v = q + 2 * D;
            // scores (T, T) = scale * q (T, hd) @ k^T (hd, T)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, scores, T);
            softmax_rows(scores, T, T);
            // out[b, :, h*hd:(h+1)*hd] (T, hd) = scores (T, T) @ v (T, hd)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, scores, T, v, ld, 0.0f,
                        out + (int64_t)b * T * D + h * hd, D);
        }
    }
}
