// Multi-head self-attention with its products on the bf16 path (AMX or AVX512-BF16, float32 sums): per
// (batch, head) one thread packs K and V once as the right-hand operands, then walks blocks of query rows:
// scores of the block against all T keys, an exact float32 softmax of each row (a block sees every key, so
// no running rescale is needed), and P V. No T x T buffer: a block holds at most 64 K floats (T <= 256: the
// whole head at once; T = 1024, a 512 px DiT/2: 64 rows).
// Compiled with AVX512-BF16 enabled; only entered when the CPU has a bf16 path.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/thread_exit.h"
#include "ops/bf16.h"
#include "ops/cpu/fast_exp512.h"
#include "ops/cpu/mask16.h"
#include "ops/dispatch.h"

// Per thread: the packed right-hand operands of one (batch, head) and the scores of one block of query rows
// (rows x T floats, rows chosen so that a block holds at most BLOCK_FLOATS: the whole T x T for T <= 256,
// 64 query rows at T = 1024), so memory stays bounded whatever the number of tokens.
enum { BLOCK_FLOATS = 1 << 16 };

typedef struct {
    bf16_packed k, v, kt, q, dout;   // packed right-hand operands
    float *scores, *dscores;         // (rows, T) each
    uint16_t *p16;                   // the forward's probabilities as P V's bf16 left operand: (rows, T) in tiles
    int64_t capacity;
    thread_exit_hook on_exit;        // frees all of it when the thread ends
} head_workspace;

static _Thread_local head_workspace ws;

static void free_head_workspace(void *arg) {
    head_workspace *w = arg;
    bf16_packed *packed[] = {&w->k, &w->v, &w->kt, &w->q, &w->dout};
    for (size_t i = 0; i < sizeof packed / sizeof packed[0]; i++) bf16_packed_free(packed[i]);
    free(w->scores), free(w->dscores), free(w->p16);
    w->scores = w->dscores = NULL, w->p16 = NULL, w->capacity = 0;
}

static int query_block_rows(int T) {
    int rows = BLOCK_FLOATS / T / 32 * 32;
    if (rows < 32) rows = 32;
    return rows < T ? rows : T;
}

static int round32(int x) { return (x + 31) / 32 * 32; }

// scores and p16 for T tokens (p16 with rows and T padded to 32); dscores too for the backward.
static dit_status ensure_scores(int T, int backward) {
    const int64_t need = (int64_t)round32(query_block_rows(T)) * round32(T);
    ws.on_exit.run = free_head_workspace, ws.on_exit.arg = &ws;
    thread_exit_register(&ws.on_exit);
    if (ws.capacity < need || (backward && !ws.dscores)) {
        free(ws.scores);
        free(ws.dscores);
        free(ws.p16);
        ws.dscores = NULL, ws.p16 = NULL;
        ws.capacity = 0;
        if (!(ws.scores = dit_malloc((size_t)need * sizeof(float)))) return DIT_ERR;
        if (!(ws.p16 = dit_malloc((size_t)need * sizeof(uint16_t)))) return DIT_ERR;
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

// row (cols) replaced by exp(row - max(row)), sixteen columns at a time; returns 1 / their sum.
static __m512 softmax_exps(float *row, int cols) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        mx = _mm512_mask_max_ps(mx, mask, mx, _mm512_maskz_loadu_ps(mask, row + c));
    }
    const __m512 row_max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        const __m512 e = fast_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + c), row_max));
        _mm512_mask_storeu_ps(row + c, mask, e);
        sum = _mm512_mask_add_ps(sum, mask, sum, e);
    }
    return _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
}

// Each row of s (rows x cols) replaced by its softmax, sixteen columns at a time.
static void softmax_rows(float *s, int rows, int cols) {
    for (int r = 0; r < rows; r++) {
        float *row = s + (int64_t)r * cols;
        const __m512 inv = softmax_exps(row, cols);
        for (int c = 0; c < cols; c += 16) {
            const __mmask16 mask = mask16(cols - c);
            _mm512_mask_storeu_ps(row + c, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + c), inv));
        }
    }
}

// dp (cols) = p * (dp - sum_j p_j dp_j): a softmax row's backward, sixteen columns at a time (the sum in sixteen
// lanes, then across them).
static void softmax_backward_row(const float *p, float *dp, int cols) {
    __m512 dot = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        dot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, p + c), _mm512_maskz_loadu_ps(mask, dp + c), dot);
    }
    const __m512 sum = _mm512_set1_ps(_mm512_reduce_add_ps(dot));
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        const __m512 pv = _mm512_maskz_loadu_ps(mask, p + c);
        _mm512_mask_storeu_ps(dp + c, mask, _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, dp + c), sum)));
    }
}

// softmax_rows, with the probabilities written rounded to bf16 into p16 (laid out as at, zeros in columns cols
// .. Kp) instead of back into s: the values a product would round them to, bit for bit.
static void softmax_rows_to16(float *s, int rows, int cols, uint16_t *p16, const a_layout *at, int Kp) {
    for (int r = 0; r < rows; r++) {
        float *row = s + (int64_t)r * cols;
        const __m512 inv = softmax_exps(row, cols);
        for (int c = 0; c < Kp; c += 16) {
            const __mmask16 mask = mask16(cols - c);   // zero past cols
            const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + c), inv);
            _mm256_storeu_si256((__m256i *)(p16 + a_offset(at, r, c)), (__m256i)_mm512_cvtneps_pbh(p));
        }
    }
}

// scores (rows, T) = scale q k^T for `rows` query rows (stride ld) against the packed keys.
static dit_status block_scores(const float *q, int rows, int T, int ld, float scale) {
    const gemm_epilogue scaled = {.alpha = scale};
    return gemm_bf16_serial(ws.scores, T, q, ld, 1, &ws.k, rows, &scaled);
}

// One (batch, head) of attention_forward_bf16, in the calling thread's workspace.
static dit_status attention_forward_head(float *out, uint16_t *out16, const a_layout *at, const float *qkv, int b,
                                         int h, int T, int D, int H, float scale) {
    const int hd = D / H, ld = 3 * D, QB = query_block_rows(T);
    DIT_TRY(ensure_scores(T, 0));
    const float *q = qkv + (int64_t)b * T * ld + h * hd, *k = q + D, *v = q + 2 * D;
    DIT_TRY(bf16_pack(&ws.k, k, T, hd, ld, 1));   // scores: B[j, d] = k[j, d]
    DIT_TRY(bf16_pack(&ws.v, v, hd, T, 1, ld));   // P v:    B[d, j] = v[j, d]
    const int Kp = ws.v.Kp;   // T padded to 32
    const a_layout p_layout = a_layout_tiles(Kp);
    for (int q0 = 0; q0 < T; q0 += QB) {
        const int rows = T - q0 < QB ? T - q0 : QB;
        // P (rows, T) = softmax(scale q k^T), straight into P V's bf16 operand
        DIT_TRY(block_scores(q + (int64_t)q0 * ld, rows, T, ld, scale));
        softmax_rows_to16(ws.scores, rows, T, ws.p16, &p_layout, Kp);
        // out rows (rows, hd) = P (rows, T) @ v (T, hd): floats, or the head's columns of the bf16 operand
        const gemm_epilogue to16 = {.out16 = out16, .out16_layout = at, .out16_row0 = b * T + q0,
                                    .out16_col0 = h * hd, .out16_cols = hd};
        DIT_TRY(gemm_bf16_a16_serial(out16 ? NULL : out + ((int64_t)b * T + q0) * D + h * hd, D, ws.p16, &p_layout,
                                     &ws.v, rows, out16 ? &to16 : NULL));
    }
    return DIT_OK;
}

dit_status attention_forward_bf16(float *out, uint16_t *out16, int kp, const float *qkv, int B, int T, int D, int H) {
    const float scale = 1.0f / sqrtf((float)(D / H));
    const a_layout tiles = a_layout_tiles(kp);
    int failed = 0;
    #pragma omp parallel
    {
        #pragma omp for collapse(2) schedule(dynamic, 1)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                if (attention_forward_head(out, out16, &tiles, qkv, b, h, T, D, H, scale)) {
                    #pragma omp atomic write
                    failed = 1;
                }
            }
        if (out16 && kp > D) {   // the operand's K padding: zeros in columns D..kp of every row
            #pragma omp for schedule(guided)
            for (int r = 0; r < B * T; r++)
                for (int k = D; k < kp; k++) out16[a_offset(&tiles, r, k)] = 0;
        }
    }
    return failed ? workspace_failed(T) : DIT_OK;
}

// One (batch, head) of attention_backward_bf16, block of query rows by block (dk and dv sum the blocks' parts
// in block order).
static dit_status attention_backward_head(float *dqkv, const float *dout, const float *qkv, int b, int h, int T,
                                          int D, int H, float scale) {
    const int hd = D / H, ld = 3 * D, QB = query_block_rows(T);
    DIT_TRY(ensure_scores(T, 1));
    const float *q = qkv + (int64_t)b * T * ld + h * hd, *k = q + D, *v = q + 2 * D;
    const float *dout_h = dout + (int64_t)b * T * D + h * hd;
    float *dq = dqkv + (int64_t)b * T * ld + h * hd, *dk = dq + D, *dv = dq + 2 * D;
    DIT_TRY(bf16_pack(&ws.k, k, T, hd, ld, 1));    // scores: B[j, d] = k[j, d]
    DIT_TRY(bf16_pack(&ws.v, v, T, hd, ld, 1));    // dP:     B[j, d] = v[j, d]
    DIT_TRY(bf16_pack(&ws.kt, k, hd, T, 1, ld));   // dq:     B[d, j] = k[j, d]
    for (int q0 = 0; q0 < T; q0 += QB) {
        const int rows = T - q0 < QB ? T - q0 : QB;
        const float *q_blk = q + (int64_t)q0 * ld, *dout_blk = dout_h + (int64_t)q0 * D;
        DIT_TRY(block_scores(q_blk, rows, T, ld, scale));   // P = softmax(scale q k^T), recomputed
        softmax_rows(ws.scores, rows, T);
        float *P = ws.scores, *dS = ws.dscores;
        const gemm_epilogue sum_blocks = {.accumulate = q0 > 0}, scaled_sum = {.alpha = scale, .accumulate = q0 > 0};
        // dv (T, hd) (+)= P^T (T, rows) @ dout_blk (rows, hd): A[j, r] = P[r, j], B[d, r] = dout_blk[r, d]
        DIT_TRY(bf16_pack(&ws.dout, dout_blk, hd, rows, 1, D));
        DIT_TRY(gemm_bf16_serial(dv, ld, P, 1, T, &ws.dout, T, &sum_blocks));
        // dP (rows, T) = dout_blk (rows, hd) @ v^T
        DIT_TRY(gemm_bf16_serial(dS, T, dout_blk, D, 1, &ws.v, rows, NULL));
        for (int i = 0; i < rows; i++) softmax_backward_row(P + (int64_t)i * T, dS + (int64_t)i * T, T);
        // dq rows (rows, hd) = scale dS (rows, T) @ k (T, hd)
        const gemm_epilogue scaled = {.alpha = scale};
        DIT_TRY(gemm_bf16_serial(dq + (int64_t)q0 * ld, ld, dS, T, 1, &ws.kt, rows, &scaled));
        // dk (T, hd) (+)= scale dS^T (T, rows) @ q_blk (rows, hd): A[j, r] = dS[r, j], B[d, r] = q_blk[r, d]
        DIT_TRY(bf16_pack(&ws.q, q_blk, hd, rows, 1, ld));
        DIT_TRY(gemm_bf16_serial(dk, ld, dS, 1, T, &ws.q, T, &scaled_sum));
    }
    return DIT_OK;
}

// As attention_backward (ops/cpu/attention.c): dv = P^T dout, dP = dout v^T, dS = P * (dP - rowsum(P * dP)),
// dq = scale dS k, dk = scale dS^T q; the five products on the bf16 path.
dit_status attention_backward_bf16(float *dqkv, const float *dout, const float *qkv, int B, int T, int D, int H) {
    const float scale = 1.0f / sqrtf((float)(D / H));
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
