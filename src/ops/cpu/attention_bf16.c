// Multi-head self-attention with its products on the bf16 path (AMX or AVX512-BF16, float32 sums): per
// (batch, head) one thread packs K and V as the right-hand operands, computes the T x T scores, a float32
// softmax, and P V. The forward holds one T x T block per thread (T = 256 for a 256 px DiT/2: 256 KB).
// Compiled with AVX512-BF16 enabled; only entered when the CPU has a bf16 path.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "ops/bf16.h"
#include "ops/cpu/fast_exp.h"
#include "ops/dispatch.h"

typedef struct {
    bf16_packed k, v, q;       // packed right-hand operands
    float *scores, *dscores;   // (T, T) each
    int64_t capacity;
} head_workspace;

static _Thread_local head_workspace ws;

static dit_status ensure_scores(int T, int backward) {
    const int64_t need = (int64_t)T * T;
    if (ws.capacity < need || (backward && !ws.dscores)) {
        free(ws.scores);
        free(ws.dscores);
        ws.dscores = NULL;
        ws.capacity = 0;
        if (!(ws.scores = dit_malloc((size_t)need * sizeof(float)))) return DIT_ERR;
        if (backward && !(ws.dscores = dit_malloc((size_t)need * sizeof(float)))) return DIT_ERR;
        ws.capacity = need;
    }
    return DIT_OK;
}

// The per-thread workspace is allocated inside the parallel loop, where the thread that fails is not the
// caller (the error message is per thread): the loop only raises a flag, and the caller reports it.
static dit_status workspace_failed(int T) {
    return dit_set_error("out of memory allocating the bf16 attention workspace (%d tokens)", T);
}

static void softmax_rows(float *s, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *row = s + (int64_t)r * cols;
        float mx = row[0];
        for (int c = 1; c < cols; c++) mx = row[c] > mx ? row[c] : mx;
        float sum = 0.0f;
        for (int c = 0; c < cols; c++) {
            row[c] = fast_expf(row[c] - mx);
            sum += row[c];
        }
        const float inv = 1.0f / sum;
        for (int c = 0; c < cols; c++) row[c] *= inv;
    }
}

// scores (T, T) = softmax(scale q k^T) of one (batch, head); q, k rows of stride ld.
static dit_status head_probs(const float *q, const float *k, int T, int hd, int ld, float scale) {
    DIT_TRY(bf16_pack(&ws.k, k, T, hd, ld, 1));
    const gemm_epilogue scaled = {.alpha = scale};
    DIT_TRY(gemm_bf16_serial(ws.scores, T, q, ld, 1, &ws.k, T, &scaled));
    softmax_rows(ws.scores, T, T);
    return DIT_OK;
}

dit_status attention_forward_bf16(float *out, const float *qkv, int B, int T, int D, int H) {
    const int hd = D / H, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)hd);
    int failed = 0;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (int64_t)b * T * ld + h * hd, *k = q + D, *v = q + 2 * D;
            // out (T, hd) = P (T, T) @ v (T, hd): B[d, t] = v[t, d]
            if (ensure_scores(T, 0) || head_probs(q, k, T, hd, ld, scale) || bf16_pack(&ws.v, v, hd, T, 1, ld) ||
                gemm_bf16_serial(out + (int64_t)b * T * D + h * hd, D, ws.scores, T, 1, &ws.v, T, NULL)) {
                #pragma omp atomic write
                failed = 1;
            }
        }
    return failed ? workspace_failed(T) : DIT_OK;
}

// One (batch, head) of attention_backward_bf16, in the calling thread's workspace.
static dit_status attention_backward_head(float *dqkv, const float *dout, const float *qkv, int b, int h, int T,
                                          int D, int H, float scale) {
    const int hd = D / H, ld = 3 * D;
    DIT_TRY(ensure_scores(T, 1));
    const float *q = qkv + (int64_t)b * T * ld + h * hd, *k = q + D, *v = q + 2 * D;
    const float *dout_h = dout + (int64_t)b * T * D + h * hd;
    float *dq = dqkv + (int64_t)b * T * ld + h * hd, *dk = dq + D, *dv = dq + 2 * D;
    DIT_TRY(head_probs(q, k, T, hd, ld, scale));
    float *P = ws.scores, *dS = ws.dscores;
    // dv (T, hd) = P^T (T, T) @ dout_h (T, hd): A[i, j] = P[j, i], B[d, j] = dout_h[j, d]
    DIT_TRY(bf16_pack(&ws.q, dout_h, hd, T, 1, D));
    DIT_TRY(gemm_bf16_serial(dv, ld, P, 1, T, &ws.q, T, NULL));
    // dP (T, T) = dout_h (T, hd) @ v^T: B[j, d] = v[j, d]
    DIT_TRY(bf16_pack(&ws.v, v, T, hd, ld, 1));
    DIT_TRY(gemm_bf16_serial(dS, T, dout_h, D, 1, &ws.v, T, NULL));
    for (int i = 0; i < T; i++) {
        const float *p = P + (int64_t)i * T;
        float *dp = dS + (int64_t)i * T;
        float dot = 0.0f;
        for (int j = 0; j < T; j++) dot += p[j] * dp[j];
        for (int j = 0; j < T; j++) dp[j] = p[j] * (dp[j] - dot);
    }
    const gemm_epilogue scaled = {.alpha = scale};
    // dq (T, hd) = scale dS (T, T) @ k (T, hd): B[d, j] = k[j, d]
    DIT_TRY(bf16_pack(&ws.k, k, hd, T, 1, ld));
    DIT_TRY(gemm_bf16_serial(dq, ld, dS, T, 1, &ws.k, T, &scaled));
    // dk (T, hd) = scale dS^T (T, T) @ q (T, hd): A[i, j] = dS[j, i], B[d, j] = q[j, d]
    DIT_TRY(bf16_pack(&ws.q, q, hd, T, 1, ld));
    return gemm_bf16_serial(dk, ld, dS, 1, T, &ws.q, T, &scaled);
}

// As attention_backward (ops/cpu/attention.c): dv = P^T dout, dP = dout v^T, dS = P * (dP - rowsum(P * dP)),
// dq = scale dS k, dk = scale dS^T q; the five products on the bf16 path.
dit_status attention_backward_bf16(float *dqkv, const float *dout, const float *qkv, int B, int T, int D, int H) {
    const int hd = D / H;
    const float scale = 1.0f / sqrtf((float)hd);
    int failed = 0;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            if (attention_backward_head(dqkv, dout, qkv, b, h, T, D, H, scale)) {
                #pragma omp atomic write
                failed = 1;
            }
        }
    return failed ? workspace_failed(T) : DIT_OK;
}
