// Multi-head self-attention of timm's Attention (no qk-norm, no dropout): per (batch, head), one T x T score
// block in the calling thread's scratch, two sgemm calls and a row softmax. Memory: T*T floats per thread
// (the backward recomputes the softmax and needs a second T x T block for its gradient: 2 T*T per thread).
#include <cblas.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops/cpu/fast_exp.h"
#include "ops/ops.h"

int64_t attention_scratch_floats(int T, int threads) { return (int64_t)T * T * (threads > 0 ? threads : 1); }

// Row softmax in place. The max is exact in any order; the exponentials are summed in 8 lanes (element c in
// lane c % 8, the last cols % 8 in a scalar), the lanes then added in a fixed tree, so a row's result depends
// only on the row (not on the batch or the threads). One pass for exp and sum instead of a serial chain of cols
// additions, which had made the softmax 5% of a DiT-S/2 fp32 forward. A build without AVX2 (the fuzzers')
// does the same operations lane by lane in scalar code, with the same result.
static float row_max(const float *row, int cols) {
    float mx = row[0];
    int c = 0;
#ifdef __AVX2__
    __m256 vmax = _mm256_set1_ps(mx);
    for (; c + 8 <= cols; c += 8) vmax = _mm256_max_ps(_mm256_loadu_ps(row + c), vmax);   // a NaN is skipped
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    mx = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
#endif
    for (; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
    return mx;
}

// row[c] = exp(row[c] - mx); returns their sum in the order described above.
static float exp_and_sum(float *row, int cols, float mx) {
    int c = 0;
    float lanes[8] = {0};
#ifdef __AVX2__
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    for (; c + 8 <= cols; c += 8) {   // fast_exp8 equals fast_expf lane by lane
        const __m256 e = fast_exp8(_mm256_sub_ps(_mm256_loadu_ps(row + c), vmx));
        _mm256_storeu_ps(row + c, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    _mm256_storeu_ps(lanes, vsum);
#else
    for (; c + 8 <= cols; c += 8)
        for (int l = 0; l < 8; l++) lanes[l] += row[c + l] = fast_expf(row[c + l] - mx);
#endif
    float tail = 0.0f;
    for (; c < cols; c++) tail += row[c] = fast_expf(row[c] - mx);
    const float a0 = lanes[0] + lanes[4], a1 = lanes[1] + lanes[5], a2 = lanes[2] + lanes[6], a3 = lanes[3] + lanes[7];
    return ((a0 + a2) + (a1 + a3)) + tail;
}

static void softmax_rows(float *s, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *row = s + (int64_t)r * cols;
        const float inv = 1.0f / exp_and_sum(row, cols, row_max(row, cols));
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

int64_t attention_backward_scratch_floats(int T, int threads) {
    return 2 * (int64_t)T * T * (threads > 0 ? threads : 1);
}

// Per (batch, head), with P = softmax(scale q k^T) recomputed exactly as the forward does:
//   dv = P^T dout,  dP = dout v^T,  dS = P * (dP - rowsum(P * dP)),  dq = scale dS k,  dk = scale dS^T q.
// Each (batch, head) writes its own columns of dqkv, so the threads never share an output.
void attention_backward(float *dqkv, const float *dout, const float *qkv, float *scratch, int B, int T, int D,
                        int H) {
    const int hd = D / H;
    const float scale = 1.0f / sqrtf((float)hd);
    const int ld = 3 * D;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
#ifdef _OPENMP
            float *probs = scratch + (int64_t)omp_get_thread_num() * 2 * T * T;
#else
            float *probs = scratch;
#endif
            float *dprobs = probs + (int64_t)T * T;
            const float *q = qkv + (int64_t)b * T * ld + h * hd;
            const float *k = q + D;
            const float *v = q + 2 * D;
            const float *dout_h = dout + (int64_t)b * T * D + h * hd;
            float *dq = dqkv + (int64_t)b * T * ld + h * hd;
            float *dk = dq + D;
            float *dv = dq + 2 * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, probs, T);
            softmax_rows(probs, T, T);
            // dv (T, hd) = P^T (T, T) @ dout_h (T, hd);  dP (T, T) = dout_h (T, hd) @ v^T (hd, T)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, probs, T, dout_h, D, 0.0f, dv, ld);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dout_h, D, v, ld, 0.0f, dprobs, T);
            for (int i = 0; i < T; i++) {
                const float *p = probs + (int64_t)i * T;
                float *dp = dprobs + (int64_t)i * T;
                float dot = 0.0f;
                for (int j = 0; j < T; j++) dot += p[j] * dp[j];
                for (int j = 0; j < T; j++) dp[j] = p[j] * (dp[j] - dot);
            }
            // dq (T, hd) = scale dS (T, T) @ k (T, hd);  dk (T, hd) = scale dS^T (T, T) @ q (T, hd)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, dprobs, T, k, ld, 0.0f, dq, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, dprobs, T, q, ld, 0.0f, dk, ld);
        }
    }
}
