// Multi-head self-attention with its products on the bf16 path (AMX or AVX512-BF16, float32 sums): per
// (batch, head) one thread rounds q (and in the backward dout) to bf16 once and packs K and V once as the
// right-hand operands, then walks blocks of query rows: scores of the block against all T keys, an exact
// float32 softmax of each row (a block sees every key, so no running rescale is needed; the 1/sqrt(head)
// scale applied inside it), and P V. No T x T buffer: a block holds at most 64 K floats (T <= 256: the
// whole head at once; T = 1024, a 512 px DiT/2: 64 rows).
// Compiled with AVX512-BF16 enabled; only entered when the CPU has a bf16 path.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/thread_exit.h"
#include "base/threads.h"
#include "ops/bf16.h"
#include "ops/cpu/convert16.h"
#include "ops/cpu/fast_exp512.h"
#include "ops/cpu/mask16.h"
#include "ops/dispatch.h"

// Per thread: the operands of one (batch, head) and the scores of one block of query rows (rows x T floats,
// rows chosen so that a block holds at most BLOCK_FLOATS: the whole T x T for T <= 256, 64 query rows at
// T = 1024), so memory stays bounded whatever the number of tokens. The forward walks its block in pieces of
// FORWARD_ROWS query rows, whose scores (32 x 256 floats at T = 256) stay in L1 from the product through the
// softmax to P's bf16 copy.
enum { BLOCK_FLOATS = 1 << 16, FORWARD_ROWS = 32 };

typedef struct {
    bf16_packed k, v, kt, q, dout;   // packed right-hand operands
    float *scores, *dscores;         // (rows, T) each
    uint16_t *q16, *dout16;          // q and dout of the head, (T, head) in tiles: the left operands of S and dP
    uint16_t *p16;                   // forward: P (rows, K = T); backward: P^T (T rows, K = rows); in tiles
    uint16_t *ds16, *dst16;          // backward: scale dS (rows, K = T) and its transpose (T rows, K = rows)
    float *grads;                    // backward: dq, dk, dv of the head, (T, 3 hd): [dq | dk | dv] per row;
                                     // forward: a block's float32 output (rows, hd)
    int64_t capacity, head_capacity, grads_capacity;
    thread_exit_hook on_exit;        // frees all of it when the thread ends
} head_workspace;

static _Thread_local head_workspace ws;

static void free_head_workspace(void *arg) {
    head_workspace *w = arg;
    bf16_packed *packed[] = {&w->k, &w->v, &w->kt, &w->q, &w->dout};
    for (size_t i = 0; i < sizeof packed / sizeof packed[0]; i++) bf16_packed_free(packed[i]);
    free(w->scores), free(w->dscores), free(w->p16), free(w->ds16), free(w->dst16), free(w->q16), free(w->dout16);
    free(w->grads);
    w->scores = w->dscores = w->grads = NULL, w->p16 = w->ds16 = w->dst16 = w->q16 = w->dout16 = NULL;
    w->capacity = w->head_capacity = w->grads_capacity = 0;
}

static int query_block_rows(int T) {
    int rows = BLOCK_FLOATS / T / 32 * 32;
    if (rows < 32) rows = 32;
    return rows < T ? rows : T;
}

static int round32(int x) { return (x + 31) / 32 * 32; }

// The workspace for T tokens of head size hd: scores and p16 (a block of query rows against T keys, both padded
// to 32), q16, grads; for the backward also dscores, ds16, dst16 and dout16.
static dit_status ensure_workspace(int T, int hd, int backward) {
    const int64_t need = (int64_t)round32(query_block_rows(T)) * round32(T), head = (int64_t)round32(T) * round32(hd);
    ws.on_exit.run = free_head_workspace, ws.on_exit.arg = &ws;
    thread_exit_register(&ws.on_exit);
    // grads: the backward's three gradients of the head, or a forward block's output
    const int64_t grads = backward ? head * 3 : (int64_t)FORWARD_ROWS * round32(hd);
    if (ws.capacity < need || ws.head_capacity < head || ws.grads_capacity < grads || (backward && !ws.dscores)) {
        free_head_workspace(&ws);
        if (!(ws.scores = dit_malloc((size_t)need * sizeof(float)))) return DIT_ERR;
        if (!(ws.p16 = dit_malloc((size_t)need * sizeof(uint16_t)))) return DIT_ERR;
        if (!(ws.q16 = dit_malloc((size_t)head * sizeof(uint16_t)))) return DIT_ERR;
        if (!(ws.grads = dit_malloc((size_t)grads * sizeof(float)))) return DIT_ERR;
        if (backward && (!(ws.dscores = dit_malloc((size_t)need * sizeof(float))) ||
                         !(ws.ds16 = dit_malloc((size_t)need * sizeof(uint16_t))) ||
                         !(ws.dst16 = dit_malloc((size_t)need * sizeof(uint16_t))) ||
                         !(ws.dout16 = dit_malloc((size_t)head * sizeof(uint16_t)))))
            return DIT_ERR;
        ws.capacity = need, ws.head_capacity = head, ws.grads_capacity = grads;
    }
    return DIT_OK;
}

// The per-thread workspace is allocated inside the parallel loop, where the thread that fails is not the
// caller (the error message is per thread): the loop only raises a flag, and the caller reports it.
static dit_status workspace_failed(int T) {
    return dit_set_error("out of memory allocating the bf16 attention workspace (%d tokens)", T);
}

// The softmax's exponential: fast_exp512_nonpositive (degree 5, 2.4e-6 relative instead of fast_exp512's 1.2e-7;
// its argument scale (s - max) is never positive), the same function in the forward, the statistics it keeps and
// the backward, so P is recomputed bit for bit. Measured on the AMX guest, the attention of DiT-XL/2 x 2 with its
// operands cold: 1.08-1.25 -> 0.97-1.01 ms; the XL/2 x 2 forward 0.288-0.296 -> 0.280-0.291 s (4 runs).
static inline __m512 softmax_exp512(__m512 x) { return fast_exp512_nonpositive(x); }

// Softmax rows go SOFTMAX_ROWS at a time, pass by pass: each pass of a row is a chain of dependent vector
// operations (the max, the sum), and the rows' chains run side by side; every row's operations are those of
// the row alone in the same order, so the same bits. Measured on the AMX guest (CPUID model 167), the attention
// of DiT-XL/2 x 2 (32 heads of 72, T = 256): 1.20 ms -> 0.91-0.97 ms alone, 46 -> 41 ms of a forward's 28;
// 8 rows a little faster than 4.
enum { SOFTMAX_ROWS = 8 };

// Rows r0 .. r0 + n - 1 (n <= SOFTMAX_ROWS) of s (row stride cols) replaced by exp(scale (row - max(row))),
// sixteen columns at a time; inv[i] = 1 / their sum: the softmax of scale * row, the scale of the scores
// applied here instead of to every product value. With stats, each row's max and 1 / sum go to stats[2 row],
// stats[2 row + 1] (the backward recomputes P from them). Always inlined, so that where n is the constant
// SOFTMAX_ROWS (softmax_group) the loops over the rows unroll and the rows' vectors stay in registers.
static inline __attribute__((always_inline)) void softmax_exps(float *s, int r0, int n, int cols, float scale, float *stats, __m512 inv[SOFTMAX_ROWS]) {
    __m512 mx[SOFTMAX_ROWS], sum[SOFTMAX_ROWS], row_max[SOFTMAX_ROWS];
    const __m512 by = _mm512_set1_ps(scale);
    for (int i = 0; i < n; i++) mx[i] = _mm512_set1_ps(-INFINITY), sum[i] = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        for (int i = 0; i < n; i++)
            mx[i] = _mm512_mask_max_ps(mx[i], mask, mx[i], _mm512_maskz_loadu_ps(mask, s + (int64_t)(r0 + i) * cols + c));
    }
    for (int i = 0; i < n; i++) row_max[i] = _mm512_set1_ps(_mm512_reduce_max_ps(mx[i]));
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        for (int i = 0; i < n; i++) {
            float *row = s + (int64_t)(r0 + i) * cols;
            const __m512 e = softmax_exp512(_mm512_mul_ps(by, _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row + c), row_max[i])));
            _mm512_mask_storeu_ps(row + c, mask, e);
            sum[i] = _mm512_mask_add_ps(sum[i], mask, sum[i], e);
        }
    }
    for (int i = 0; i < n; i++) {
        const float one_over = 1.0f / _mm512_reduce_add_ps(sum[i]);
        if (stats) stats[2 * (r0 + i)] = _mm512_cvtss_f32(row_max[i]), stats[2 * (r0 + i) + 1] = one_over;
        inv[i] = _mm512_set1_ps(one_over);
    }
}

// Rows r0 .. r0 + n - 1 of softmax_rows.
static inline __attribute__((always_inline)) void softmax_group(float *s, int r0, int n, int cols, float scale) {
    __m512 inv[SOFTMAX_ROWS];
    softmax_exps(s, r0, n, cols, scale, NULL, inv);
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        for (int i = 0; i < n; i++) {
            float *row = s + (int64_t)(r0 + i) * cols;
            _mm512_mask_storeu_ps(row + c, mask, _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, row + c), inv[i]));
        }
    }
}

// Each row of s (rows x cols) replaced by the softmax of scale * row, sixteen columns at a time.
static void softmax_rows(float *s, int rows, int cols, float scale) {
    int r0 = 0;
    for (; r0 + SOFTMAX_ROWS <= rows; r0 += SOFTMAX_ROWS) softmax_group(s, r0, SOFTMAX_ROWS, cols, scale);
    if (r0 < rows) softmax_group(s, r0, rows - r0, cols, scale);
}

// dp (cols) = scale p * (dp - sum_j p_j dp_j): a softmax row's backward with the scores' scale (the gradient of
// the unscaled q k^T), sixteen columns at a time (the sum in sixteen lanes, then across them).
static void softmax_backward_row(const float *p, float *dp, int cols, float scale) {
    __m512 dot = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        dot = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, p + c), _mm512_maskz_loadu_ps(mask, dp + c), dot);
    }
    const __m512 sum = _mm512_set1_ps(_mm512_reduce_add_ps(dot)), by = _mm512_set1_ps(scale);
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        const __m512 pv = _mm512_mul_ps(by, _mm512_maskz_loadu_ps(mask, p + c));
        _mm512_mask_storeu_ps(dp + c, mask, _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, dp + c), sum)));
    }
}

// softmax_rows followed by softmax_backward_row for one row, from the forward's max and 1 / sum of the row
// (stats): P = exp(scale (s - max)) / sum written over s and its products with dp summed in one pass, then dp
// replaced by dS; the same operations in the same order as the three passes of softmax_rows and the two of
// softmax_backward_row, so the same bits.
static void softmax_backward_row_from(float *s, float *dp, int cols, float scale, const float *stats) {
    const __m512 row_max = _mm512_set1_ps(stats[0]), inv = _mm512_set1_ps(stats[1]), by = _mm512_set1_ps(scale);
    __m512 dot = _mm512_setzero_ps();
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        const __m512 e = softmax_exp512(_mm512_mul_ps(by, _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + c), row_max)));
        const __m512 p = _mm512_maskz_mul_ps(mask, e, inv);
        _mm512_mask_storeu_ps(s + c, mask, p);
        dot = _mm512_fmadd_ps(p, _mm512_maskz_loadu_ps(mask, dp + c), dot);
    }
    const __m512 sum = _mm512_set1_ps(_mm512_reduce_add_ps(dot));
    for (int c = 0; c < cols; c += 16) {
        const __mmask16 mask = mask16(cols - c);
        const __m512 pv = _mm512_mul_ps(by, _mm512_maskz_loadu_ps(mask, s + c));
        _mm512_mask_storeu_ps(dp + c, mask, _mm512_mul_ps(pv, _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, dp + c), sum)));
    }
}

// Rows r0 .. r0 + n - 1 of softmax_rows_to16.
static inline __attribute__((always_inline)) void softmax_group_to16(float *s, int r0, int n, int cols, float scale,
                                                                     uint16_t *p16, const a_layout *at, int Kp,
                                                                     float *stats) {
    __m512 inv[SOFTMAX_ROWS];
    softmax_exps(s, r0, n, cols, scale, stats, inv);
    for (int c = 0; c < Kp; c += 16) {
        const __mmask16 mask = mask16(cols - c);   // zero past cols
        for (int i = 0; i < n; i++) {
            const __m512 p = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, s + (int64_t)(r0 + i) * cols + c), inv[i]);
            _mm256_storeu_si256((__m256i *)(p16 + a_offset(at, r0 + i, c)), (__m256i)_mm512_cvtneps_pbh(p));
        }
    }
}

// softmax_rows, with the probabilities written rounded to bf16 into p16 (laid out as at, zeros in columns cols
// .. Kp) instead of back into s: the values a product would round them to, bit for bit.
static void softmax_rows_to16(float *s, int rows, int cols, float scale, uint16_t *p16, const a_layout *at, int Kp,
                              float *stats) {
    int r0 = 0;
    for (; r0 + SOFTMAX_ROWS <= rows; r0 += SOFTMAX_ROWS)
        softmax_group_to16(s, r0, SOFTMAX_ROWS, cols, scale, p16, at, Kp, stats);
    if (r0 < rows) softmax_group_to16(s, r0, rows - r0, cols, scale, p16, at, Kp, stats);
}

// One head's columns of q, k or v: element (t, d) at [t * ld + d] of f32 or of b16 (the other NULL).
typedef struct {
    const float *f32;
    const uint16_t *b16;
    int64_t ld;
} head_part;

// p from its row `row0` on.
static head_part from_row(head_part p, int row0) {
    if (p.f32) p.f32 += (int64_t)row0 * p.ld;
    else p.b16 += (int64_t)row0 * p.ld;
    return p;
}

// Part `part` (0 q, 1 k, 2 v) of head h of batch b, from the first row `row0`.
static head_part part_of(qkv_rows qkv, int b, int h, int part, int row0, int T, int D, int H) {
    const int hd = D / H;
    if (qkv.head_major) return (head_part){.b16 = qkv.b16 + ((((int64_t)b * 3 + part) * H + h) * T + row0) * hd, .ld = hd};
    const int64_t ld = 3 * (int64_t)D, at = ((int64_t)b * T + row0) * ld + part * D + h * hd;
    return (head_part){.f32 = qkv.f32 ? qkv.f32 + at : NULL, .b16 = qkv.b16 ? qkv.b16 + at : NULL, .ld = ld};
}

// The T rows of one head's columns (hd of them) rounded to bf16 into dst: (T, hd) in tiles, K padded to 32,
// rows to 32 (zeros). From bf16, copied.
static void head_to16(uint16_t *dst, head_part src, int T, int hd) {
    const int Kp = round32(hd), Tp = round32(T);
    const a_layout at = a_layout_tiles(Kp);
    if (src.f32) {
        bf16_convert_serial(src.f32, src.ld, T, hd, Tp, Kp, dst, &at, NULL, NULL);
        return;
    }
    for (int r = 0; r < Tp; r++)
        for (int k = 0; k < Kp; k += 16) {
            const __mmask16 mask = r < T ? mask16(hd - k) : 0;
            _mm256_storeu_si256((__m256i *)(dst + a_offset(&at, r, k)),
                                _mm256_maskz_loadu_epi16(mask, src.b16 + (int64_t)r * src.ld + k));
        }
}

// bf16_pack of B (N, K) from a head's part: B[n, k] = part[n, k] (n_is_row: N walks its rows, as keys for the
// scores) or part[k, n] (N walks its columns, as values for P V).
static dit_status pack_part(bf16_packed *dst, head_part src, int N, int K, int n_is_row) {
    const int64_t sn = n_is_row ? src.ld : 1, sk = n_is_row ? 1 : src.ld;
    return src.f32 ? bf16_pack(dst, src.f32, N, K, sn, sk) : bf16_pack16(dst, src.b16, N, K, sn, sk);
}

// n floats from src to dst, sixteen at a time. dst is a head's columns in rows of a matrix that no cache holds
// (the output, or dqkv: written once here, read by the next op after every head is done): where a run starts a
// cache line, stores that bypass the caches (no line is read first). On the AMX guest, a head's dq, dk, dv
// written this way from a scratch in cache took a quarter of the time of plain stores from it, and the
// products' tile stores straight into dqkv took longer than either.
static void store_row(float *dst, const float *src, int n) {
    int c = 0;
    if (((uintptr_t)dst & 63) == 0)
        for (; c + 16 <= n; c += 16) _mm512_stream_ps(dst + c, _mm512_loadu_ps(src + c));
    for (; c < n; c += 16) {
        const __mmask16 mask = mask16(n - c);
        _mm512_mask_storeu_ps(dst + c, mask, _mm512_maskz_loadu_ps(mask, src + c));
    }
}

// Heads go to the threads in runs of consecutive heads, so that a thread knows the head it takes next and asks
// for that head's rows of qkv (and dout) while it works on this one: rows a head's width apart in a matrix no
// cache holds, which the hardware prefetchers do not follow (11-19% of the attention's time on the AMX guest
// at DiT-S/2 x 8). Runs of up to 4 heads, shorter when there are fewer than two runs a thread: 8 had measured
// faster than 2 and 4 (thirteenth sitting), but with the forward run alternately both ways in one process
// (seventeenth sitting) 4 was faster: XL/2 x 2 0.990 of the time (17 of 24 rounds, twice), DiT-S/2 x 8 0.994
// (26 of 40), the S/2 training step 0.2-1.5% (3 of 3 pairs): shorter runs leave less for one thread to finish
// alone at the end.
static int head_run(int heads) {
    const int run = heads / (2 * dit_max_threads());
    return run < 1 ? 1 : run > 4 ? 4 : run;
}

// Ask for `bytes` bytes of each of T rows (ld_bytes apart) from src into L2.
static void prefetch_rows(const void *src, int64_t ld_bytes, int T, int bytes) {
    for (int r = 0; r < T; r++)
        for (int c = 0; c < bytes; c += 64) _mm_prefetch((const char *)src + r * ld_bytes + c, _MM_HINT_T1);
}

// The head after head i = b * H + h, when the same thread takes it (runs of `run` heads): its rows of qkv and of
// dout (unless NULL).
static void prefetch_next_head(qkv_rows qkv, const float *dout, int i, int run, int B, int T, int D, int H) {
    const int next = i + 1, hd = D / H;
    if (next % run == 0 || next >= B * H) return;
    const int b = next / H, h = next % H;
    for (int part = 0; part < 3; part++) {
        const head_part p = part_of(qkv, b, h, part, 0, T, D, H);
        if (p.f32) prefetch_rows(p.f32, p.ld * 4, T, hd * 4);
        else prefetch_rows(p.b16, p.ld * 2, T, hd * 2);
    }
    if (dout) prefetch_rows(dout + (int64_t)b * T * D + h * hd, (int64_t)D * 4, T, hd * 4);
}

// One (batch, head) of attention_forward_bf16, in the calling thread's workspace: per FORWARD_ROWS query rows,
// S = q k^T into the scores, P = softmax(scale S) into bf16, out = P v.
static dit_status attention_forward_head(float *out, uint16_t *out16, const a_layout *at, qkv_rows qkv, float *stats,
                                         int i, int run, int B, int T, int D, int H, float scale) {
    const int b = i / H, h = i % H;
    const int hd = D / H;
    DIT_TRY(ensure_workspace(T, hd, 0));
    head_to16(ws.q16, part_of(qkv, b, h, 0, 0, T, D, H), T, hd);
    DIT_TRY(pack_part(&ws.k, part_of(qkv, b, h, 1, 0, T, D, H), T, hd, 1));    // scores: B[j, d] = k[j, d]
    DIT_TRY(pack_part(&ws.v, part_of(qkv, b, h, 2, 0, T, D, H), hd, T, 0));    // P v:    B[d, j] = v[j, d]
    prefetch_next_head(qkv, NULL, i, run, B, T, D, H);
    const int Kp = ws.v.Kp;   // T padded to 32
    const a_layout p_layout = a_layout_tiles(Kp), q_layout = a_layout_tiles(ws.k.Kp);
    for (int q0 = 0; q0 < T; q0 += FORWARD_ROWS) {
        const int rows = T - q0 < FORWARD_ROWS ? T - q0 : FORWARD_ROWS;
        // P (rows, T) = softmax(scale q k^T), straight into P V's bf16 operand
        DIT_TRY(gemm_bf16_a16_serial(ws.scores, T, ws.q16 + a_offset(&q_layout, q0, 0), &q_layout, &ws.k, rows, NULL));
        softmax_rows_to16(ws.scores, rows, T, scale, ws.p16, &p_layout, Kp, stats ? stats + ((int64_t)i * T + q0) * 2 : NULL);
        // out rows (rows, hd) = P (rows, T) @ v (T, hd): floats, or the head's columns of the bf16 operand
        const gemm_epilogue to16 = {.out16 = out16, .out16_layout = at, .out16_row0 = b * T + q0,
                                    .out16_col0 = h * hd, .out16_cols = hd};
        if (out16) {
            DIT_TRY(gemm_bf16_a16_serial(NULL, D, ws.p16, &p_layout, &ws.v, rows, &to16));
            continue;
        }
        // floats: through ws.grads (in cache), then streamed to out's rows (store_row)
        DIT_TRY(gemm_bf16_a16_serial(ws.grads, hd, ws.p16, &p_layout, &ws.v, rows, NULL));
        for (int r = 0; r < rows; r++) store_row(out + ((int64_t)b * T + q0 + r) * D + h * hd, ws.grads + r * hd, hd);
    }
    if (!out16) _mm_sfence();
    return DIT_OK;
}

dit_status attention_forward_bf16(float *out, uint16_t *out16, int kp, qkv_rows qkv, float *stats, int B, int T, int D,
                                  int H) {
    DIT_CHECK(!qkv.f32 != !qkv.b16);
    const float scale = 1.0f / sqrtf((float)(D / H));
    const a_layout tiles = a_layout_tiles(kp);
    const int run = head_run(B * H);
    int failed = 0;
    #pragma omp parallel
    {
        #pragma omp for schedule(dynamic, run)
        for (int i = 0; i < B * H; i++)
            if (attention_forward_head(out, out16, &tiles, qkv, stats, i, run, B, T, D, H, scale)) {
                #pragma omp atomic write
                failed = 1;
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
// in block order). Per block: S = q k^T, P = softmax(scale S), dP = dout v^T, dS = scale P * (dP - rowsum(P *
// dP)) in float32; P^T, dS and dS^T rounded to bf16 once each as the left operands of dv (+)= P^T dout,
// dq = dS k and dk (+)= dS^T q.
static dit_status attention_backward_head(float *dqkv, bf16_both *both, attn_dout dout, qkv_rows qkv,
                                          const float *stats, int i, int run, int B, int T, int D, int H, float scale) {
    const int b = i / H, h = i % H;
    const int hd = D / H, ld = 3 * D, QB = query_block_rows(T);
    DIT_TRY(ensure_workspace(T, hd, 1));
    const head_part k = part_of(qkv, b, h, 1, 0, T, D, H), v = part_of(qkv, b, h, 2, 0, T, D, H);
    // the head's dout: rows D apart in float32, or its own hd-wide rows in bf16
    const head_part dout_h = dout.f32 ? (head_part){.f32 = dout.f32 + (int64_t)b * T * D + h * hd, .ld = D}
                                      : (head_part){.b16 = dout.b16 + ((int64_t)b * H + h) * T * hd, .ld = hd};
    // the products write the head's gradients into ws.grads, which stays in cache; they go to dqkv at the end
    float *dq = ws.grads, *dk = dq + hd, *dv = dq + 2 * hd;
    const int lg = 3 * hd;
    head_to16(ws.q16, part_of(qkv, b, h, 0, 0, T, D, H), T, hd);
    head_to16(ws.dout16, dout_h, T, hd);
    DIT_TRY(pack_part(&ws.k, k, T, hd, 1));    // scores: B[j, d] = k[j, d]
    DIT_TRY(pack_part(&ws.v, v, T, hd, 1));    // dP:     B[j, d] = v[j, d]
    DIT_TRY(pack_part(&ws.kt, k, hd, T, 0));   // dq:     B[d, j] = k[j, d]
    prefetch_next_head(qkv, dout.f32, i, run, B, T, D, H);
    const int Tp = round32(T);
    const a_layout head_layout = a_layout_tiles(round32(hd)), rows_layout = a_layout_tiles(Tp);
    for (int q0 = 0; q0 < T; q0 += QB) {
        const int rows = T - q0 < QB ? T - q0 : QB, rows_p = round32(rows);
        const a_layout cols_layout = a_layout_tiles(rows_p);   // P^T and dS^T: T rows, K = the block's rows
        float *P = ws.scores, *dS = ws.dscores;
        // P = softmax(scale q k^T), recomputed
        DIT_TRY(gemm_bf16_a16_serial(P, T, ws.q16 + a_offset(&head_layout, q0, 0), &head_layout, &ws.k, rows, NULL));
        if (!stats) softmax_rows(P, rows, T, scale);
        // dP (rows, T) = dout_blk (rows, hd) @ v^T, then dS = scale P * (dP - rowsum(P * dP))
        DIT_TRY(gemm_bf16_a16_serial(dS, T, ws.dout16 + a_offset(&head_layout, q0, 0), &head_layout, &ws.v, rows, NULL));
        for (int r = 0; r < rows; r++) {
            if (stats)   // P from the forward's statistics of the row, in the same pass as the sum of P dP
                softmax_backward_row_from(P + (int64_t)r * T, dS + (int64_t)r * T, T, scale,
                                          stats + ((int64_t)i * T + q0 + r) * 2);
            else
                softmax_backward_row(P + (int64_t)r * T, dS + (int64_t)r * T, T, scale);
        }
        bf16_convert_serial(P, T, rows, T, rows_p, Tp, NULL, NULL, ws.p16, &cols_layout);
        bf16_convert_serial(dS, T, rows, T, rows_p, Tp, ws.ds16, &rows_layout, ws.dst16, &cols_layout);
        const gemm_epilogue sum_blocks = {.accumulate = q0 > 0};
        // dv (T, hd) (+)= P^T (T, rows) @ dout_blk (rows, hd): B[d, r] = dout_blk[r, d]
        DIT_TRY(pack_part(&ws.dout, from_row(dout_h, q0), hd, rows, 0));
        DIT_TRY(gemm_bf16_a16_serial(dv, lg, ws.p16, &cols_layout, &ws.dout, T, &sum_blocks));
        // dq rows (rows, hd) = dS (rows, T) @ k (T, hd)
        DIT_TRY(gemm_bf16_a16_serial(dq + (int64_t)q0 * lg, lg, ws.ds16, &rows_layout, &ws.kt, rows, NULL));
        // dk (T, hd) (+)= dS^T (T, rows) @ q_blk (rows, hd): B[d, r] = q_blk[r, d]
        DIT_TRY(pack_part(&ws.q, part_of(qkv, b, h, 0, q0, T, D, H), hd, rows, 0));
        DIT_TRY(gemm_bf16_a16_serial(dk, lg, ws.dst16, &cols_layout, &ws.q, T, &sum_blocks));
    }
    if (both && T % 32 == 0 && hd % 32 == 0) {   // whole 32 x 32 blocks, streamed (convert_32x32_streamed)
        const a_layout at_rows = a_layout_tiles(both->Np), at_cols = a_layout_tiles(both->Mp);
        for (int t0 = 0; t0 < T; t0 += 32)
            for (int part = 0; part < 3; part++)
                for (int j0 = 0; j0 < hd; j0 += 32) {
                    __m512 v[32][2];
                    for (int k = 0; k < 32; k++)
                        for (int c = 0; c < 2; c++) v[k][c] = _mm512_loadu_ps(ws.grads + (int64_t)(t0 + k) * lg + part * hd + j0 + 16 * c);
                    const int m0 = b * T + t0, n0 = part * D + h * hd + j0;
                    float *sums = both->chunk_sums + (int64_t)(m0 / 16) * both->Np + n0;
                    convert_32x32_streamed(v, both->rows16, &at_rows, both->cols16, &at_cols, m0, n0, sums, sums + both->Np);
                }
        _mm_sfence();
        return DIT_OK;
    }
    if (both) {   // 16 x 16 blocks of the head's columns, as bf16_convert_both(dqkv) makes them
        const a_layout at_rows = a_layout_tiles(both->Np), at_cols = a_layout_tiles(both->Mp);
        for (int t0 = 0; t0 < T; t0 += 16)
            for (int part = 0; part < 3; part++)
                for (int j0 = 0; j0 < hd; j0 += 16) {
                    __m512 r[16];
                    for (int k = 0; k < 16; k++) r[k] = _mm512_loadu_ps(ws.grads + (int64_t)(t0 + k) * lg + part * hd + j0);
                    const int m0 = b * T + t0, n0 = part * D + h * hd + j0;
                    convert_16x16(r, both->rows16, &at_rows, both->cols16, &at_cols, m0, n0,
                                  both->chunk_sums + (int64_t)(m0 / 16) * both->Np + n0);
                }
        return DIT_OK;
    }
    float *out = dqkv + (int64_t)b * T * ld + h * hd;
    for (int r = 0; r < T; r++)
        for (int part = 0; part < 3; part++) store_row(out + (int64_t)r * ld + part * D, ws.grads + (int64_t)r * lg + part * hd, hd);
    _mm_sfence();   // the streamed stores ordered before whatever the thread writes next
    return DIT_OK;
}

int attention_backward_fills_both(int B, int T, int D, int H) {
    return (int64_t)B * T % 32 == 0 && 3 * D % 32 == 0 && T % 16 == 0 && D % H == 0 && D / H % 16 == 0;
}

// As attention_backward (ops/cpu/attention.c): dv = P^T dout, dP = dout v^T, dS = P * (dP - rowsum(P * dP)),
// dq = scale dS k, dk = scale dS^T q; the five products on the bf16 path.
dit_status attention_backward_bf16(float *dqkv, bf16_both *both, attn_dout dout, qkv_rows qkv, const float *stats,
                                   int B, int T, int D, int H) {
    DIT_CHECK(!qkv.f32 != !qkv.b16 && !dout.f32 != !dout.b16);
    DIT_CHECK(!both || (attention_backward_fills_both(B, T, D, H) && both->M == B * T && both->N == 3 * D));
    const float scale = 1.0f / sqrtf((float)(D / H));
    int failed = 0;
    const int run = head_run(B * H);
    #pragma omp parallel for schedule(dynamic, run)
    for (int i = 0; i < B * H; i++)
        if (attention_backward_head(dqkv, both, dout, qkv, stats, i, run, B, T, D, H, scale)) {
            #pragma omp atomic write
            failed = 1;
        }
    return failed ? workspace_failed(T) : DIT_OK;
}
