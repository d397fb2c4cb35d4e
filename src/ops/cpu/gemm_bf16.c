// The bf16 GEMM driver: packing of both operands, the AVX512-BF16 micro-kernel, the fused epilogue, and the
// split of the work over threads (the AMX micro-kernel is in gemm_amx.c). Compiled with AVX512-BF16
// enabled; only entered when cpu_path_active() >= CPU_PATH_AVX512_BF16.
//
// Blocking: A (M, K) is converted once into a bf16 copy (rows padded to 32, K to 32) laid out tile by tile
// (a_layout in ops/bf16.h), so the kernel's A tiles are contiguous 1 KB pieces read in order. The work is
// 32 x 32 output blocks; K is cut into blocks of at most 1152, and for each K block a 32-row block of A meets a
// slab of packed B panels that stays in L2 (run_blocks). The sum over K runs in one fixed order for every row.
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/bf16_bits.h"
#include "base/error.h"
#include "base/thread_exit.h"
#include "ops/bf16.h"
#include "ops/cpu/bf16_pairs.h"
#include "ops/cpu/convert16.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/fast_exp512.h"
#include "ops/cpu/mask16.h"
#include "ops/cpu/transpose16.h"

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

// ---- packing ------------------------------------------------------------------------------------------

// Source rows contiguous along K (an nn.Linear weight): 16 rows n0.. at a time, per 32-wide K block. Each row's
// 32 floats become 16 bf16 pairs (one dword each); the 16 x 16 dwords are transposed in registers, so vector p
// holds pair p of all 16 rows: the 64-byte pair row p of the half-block. With wt (KBt K blocks), the same values
// also go into the pack of the transpose (B'[k, n] = src[n, k]: each two rows are a K' pair), from the same read.
static void pack_rows_along_k(uint16_t *d, int KB, const float *src, int N, int K, int64_t stride_n, int n0,
                              uint16_t *wt, int KBt) {
    for (int kb = 0; kb < KB; kb++) {
        const int k0 = kb * 32, left = K - k0;
        const __mmask16 m_lo = mask16(left), m_hi = mask16(left - 16);
        __m512 pairs[16];
        for (int i = 0; i < 16; i += 2) {
            __m512 lo[2], hi[2];
            for (int j = 0; j < 2; j++) {
                const float *row = src + (int64_t)(n0 + i + j) * stride_n + k0;
                const int inside = n0 + i + j < N;
                lo[j] = inside ? _mm512_maskz_loadu_ps(m_lo, row) : _mm512_setzero_ps();
                hi[j] = inside ? _mm512_maskz_loadu_ps(m_hi, row + 16) : _mm512_setzero_ps();
                pairs[i + j] = (__m512)_mm512_cvtne2ps_pbh(hi[j], lo[j]);   // bf16 k0..k0+31 of the row: dword = pair
            }
            if (wt) {   // rows n0 + i, n0 + i + 1: K' pair n0 + i of the transpose's columns k0 ..
                store_pair_row(wt, KBt, k0, n0 + i, lo[0], lo[1]);
                store_pair_row(wt, KBt, k0 + 16, n0 + i, hi[0], hi[1]);
            }
        }
        transpose_16x16(pairs);
        uint16_t *half = d + packed_index(KB, n0, k0);
        for (int p = 0; p < 16; p++) _mm512_storeu_si512(half + p * 32, (__m512i)pairs[p]);
    }
}

dit_status bf16_pack_both(bf16_packed *w, bf16_packed *wt, const float *W, int N, int K) {
    DIT_TRY(bf16_packed_reserve(w, N, K));
    DIT_TRY(bf16_packed_reserve(wt, K, N));
    DIT_CHECK(w->Np == wt->Kp && w->Kp == wt->Np);
    const int big = (int64_t)N * K > (1 << 16);
    #pragma omp parallel for schedule(guided) if (big)
    for (int n0 = 0; n0 < w->Np; n0 += 16) pack_rows_along_k(w->data, w->Kp / 32, W, N, K, K, n0, wt->data, wt->Kp / 32);
    return DIT_OK;
}

// Source rows contiguous along N (a weight used transposed, or V): per K pair, 16 columns of rows k and k + 1
// are interleaved into one 64-byte pair row; with gelu, of gelu_tanh(source).
static void pack_rows_along_n(uint16_t *d, int KB, int Np, const float *src, int N, int K, int64_t stride_k, int k,
                              int gelu) {
    for (int n0 = 0; n0 < Np; n0 += 16) {
        const int left = N - n0;
        const __mmask16 mask = mask16(left);
        __m512 r0 = k < K ? _mm512_maskz_loadu_ps(mask, src + (int64_t)k * stride_k + n0) : _mm512_setzero_ps();
        __m512 r1 = k + 1 < K ? _mm512_maskz_loadu_ps(mask, src + (int64_t)(k + 1) * stride_k + n0)
                              : _mm512_setzero_ps();
        if (gelu) r0 = gelu_tanh512(r0), r1 = gelu_tanh512(r1);   // gelu(0) = 0: the padding stays zero
        store_pair_row(d, KB, n0, k, r0, r1);
    }
}

dit_status bf16_pack_gelu(bf16_packed *dst, const float *src, int N, int K, int64_t stride_k) {
    DIT_TRY(bf16_packed_reserve(dst, N, K));
    #pragma omp parallel for schedule(guided) if ((int64_t)N * K > (1 << 16))
    for (int k = 0; k < dst->Kp; k += 2) pack_rows_along_n(dst->data, dst->Kp / 32, dst->Np, src, N, K, stride_k, k, 1);
    return DIT_OK;
}

dit_status bf16_pack(bf16_packed *dst, const float *src, int N, int K, int64_t stride_n, int64_t stride_k) {
    DIT_TRY(bf16_packed_reserve(dst, N, K));
    const int Np = dst->Np, Kp = dst->Kp, KB = Kp / 32;
    uint16_t *d = dst->data;
    // Weights may be large (XL: 675 M values) and training packs them every step: the work is split over
    // the threads when called from outside a parallel region.
    const int big = (int64_t)N * K > (1 << 16);
    if (stride_k == 1) {
        #pragma omp parallel for schedule(guided) if (big)
        for (int n0 = 0; n0 < Np; n0 += 16) pack_rows_along_k(d, KB, src, N, K, stride_n, n0, NULL, 0);
        return DIT_OK;
    }
    if (stride_n == 1) {
        #pragma omp parallel for schedule(guided) if (big)
        for (int k = 0; k < Kp; k += 2) pack_rows_along_n(d, KB, Np, src, N, K, stride_k, k, 0);
        return DIT_OK;
    }
    // Any other strides: element by element, 16 x 16 blocks at a time.
    for (int n0 = 0; n0 < Np; n0 += 16)
        for (int k0 = 0; k0 < Kp; k0 += 16)
            for (int n = n0; n < n0 + 16; n++)
                for (int k = k0; k < k0 + 16; k++)
                    d[packed_index(KB, n, k)] =
                        (n < N && k < K) ? bf16_bits_from_float(src[n * stride_n + k * stride_k]) : 0;
    return DIT_OK;
}

// ---- packing from bf16 -------------------------------------------------------------------------------

// The lane mask of a 32-element bf16 step with `left` elements to go.
static inline __mmask32 mask32(int left) {
    return left >= 32 ? (__mmask32)0xffffffffu : left > 0 ? (__mmask32)((1u << left) - 1) : (__mmask32)0;
}

// pack_rows_along_k for a bf16 source: a row's 32 bf16 of a K block are already its 16 pairs.
static void pack16_rows_along_k(uint16_t *d, int KB, const uint16_t *src, int N, int K, int64_t stride_n, int n0) {
    for (int kb = 0; kb < KB; kb++) {
        const int k0 = kb * 32;
        const __mmask32 m = mask32(K - k0);
        __m512 pairs[16];
        for (int i = 0; i < 16; i++)
            pairs[i] = n0 + i < N ? (__m512)_mm512_maskz_loadu_epi16(m, src + (int64_t)(n0 + i) * stride_n + k0)
                                  : _mm512_setzero_ps();
        transpose_16x16(pairs);
        uint16_t *half = d + packed_index(KB, n0, k0);
        for (int p = 0; p < 16; p++) _mm512_storeu_si512(half + p * 32, (__m512i)pairs[p]);
    }
}

// pack_rows_along_n for a bf16 source: 16 columns of rows k and k + 1 interleaved into their pair row.
static void pack16_rows_along_n(uint16_t *d, int KB, int Np, const uint16_t *src, int N, int K, int64_t stride_k,
                                int k) {
    for (int n0 = 0; n0 < Np; n0 += 16) {
        const __mmask16 mask = mask16(N - n0);
        const __m256i r0 = k < K ? _mm256_maskz_loadu_epi16(mask, src + (int64_t)k * stride_k + n0) : _mm256_setzero_si256();
        const __m256i r1 = k + 1 < K ? _mm256_maskz_loadu_epi16(mask, src + (int64_t)(k + 1) * stride_k + n0)
                                     : _mm256_setzero_si256();
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
        _mm512_storeu_si512(d + packed_index(KB, n0, k), bf16_interleave(both));
    }
}

// Serial: its callers (attention's heads) pack one small operand per thread.
dit_status bf16_pack16(bf16_packed *dst, const uint16_t *src, int N, int K, int64_t stride_n, int64_t stride_k) {
    DIT_CHECK(stride_k == 1 || stride_n == 1);
    DIT_TRY(bf16_packed_reserve(dst, N, K));
    const int Np = dst->Np, Kp = dst->Kp, KB = Kp / 32;
    if (stride_k == 1)
        for (int n0 = 0; n0 < Np; n0 += 16) pack16_rows_along_k(dst->data, KB, src, N, K, stride_n, n0);
    else
        for (int k = 0; k < Kp; k += 2) pack16_rows_along_n(dst->data, KB, Np, src, N, K, stride_k, k);
    return DIT_OK;
}

// Rows [r0, r1) of the bf16 copy of A: Kp columns, zero beyond K and for rows >= M. Runs of 16 along K are
// contiguous in every layout.
static void pack_a_rows(uint16_t *dst, const a_layout *at, int Kp, const float *A, int64_t stride_m,
                        int64_t stride_k, int M, int K, int r0, int r1) {
    for (int r = r0; r < r1; r++) {
        if (r >= M) {
            for (int k = 0; k < Kp; k += 16) memset(dst + a_offset(at, r, k), 0, 16 * sizeof(uint16_t));
            continue;
        }
        const float *src = A + (int64_t)r * stride_m;
        int k = 0;
        if (stride_k == 1) {
            for (; k < K; k += 16) {   // the last run masked: zero past K, rounded as the others
                const __mmask16 mask = mask16(K - k);
                _mm256_storeu_si256((__m256i *)(dst + a_offset(at, r, k)),
                                    (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + k)));
            }
        } else {
            for (; k < K; k++) dst[a_offset(at, r, k)] = bf16_bits_from_float(src[k * stride_k]);
        }
        for (; k < Kp; k++) dst[a_offset(at, r, k)] = 0;
    }
}

// Source rows m0 .. m0 + 15 of src (M rows of N floats, `stride` apart), read 16 x 16 at a time along the rows
// (16 sequential streams), columns n_first .. Np (n_first a multiple of 16; zeros past N; zeros for rows past
// M): convert_16x16 into rows16 / cols16, the column sums to sums + n0. cols16 alone is a transposed left
// operand: a gradient read as A^T (gemm_run's stride_m == 1); both are the two left operands of a linear
// backward (bf16_convert_both).
static void convert_chunk(const float *src, int64_t stride, int M, int N, int Np, uint16_t *rows16,
                          const a_layout *at_rows, uint16_t *cols16, const a_layout *at_cols, int m0, float *sums,
                          int n_first) {
    const int rows = M - m0 < 16 ? M - m0 : 16;
    for (int n0 = n_first; n0 < Np; n0 += 16) {
        const __mmask16 mask = mask16(N - n0);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(mask, src + (int64_t)(m0 + i) * stride + n0) : _mm512_setzero_ps();
        convert_16x16(r, rows16, at_rows, cols16, at_cols, m0, n0, sums ? sums + n0 : NULL);
    }
}

void bf16_convert_serial(const float *src, int64_t stride, int M, int N, int Mp, int Np, uint16_t *rows16,
                         const a_layout *at_rows, uint16_t *cols16, const a_layout *at_cols) {
    for (int m0 = 0; m0 < Mp; m0 += 16)
        convert_chunk(src, stride, M, N, Np, rows16, at_rows, cols16, at_cols, m0, NULL, 0);
}

// A source with neither stride 1 (stride_m == 1 goes through convert_chunk), element by element.
static void pack_a_rows_transposed(uint16_t *dst, const a_layout *at, int Kp, const float *A, int64_t stride_m,
                                   int64_t stride_k, int M, int K, int r0, int r1) {
    for (int rb = r0; rb < r1; rb += 16) {
        const int re = rb + 16 < r1 ? rb + 16 : r1;
        for (int k0 = 0; k0 < Kp; k0 += 16)
            for (int k = k0; k < k0 + 16; k++)
                for (int r = rb; r < re; r++)
                    dst[a_offset(at, r, k)] =
                        (r < M && k < K) ? bf16_bits_from_float(A[r * stride_m + k * stride_k]) : 0;
    }
}

// ---- the AVX512-BF16 micro-kernel ------------------------------------------------------------------------

// One 32-deep K step of an 8-row block: its first `pairs` K pairs (16: all; fewer on the last step of a K that
// is not a multiple of 32, whose other pairs are zeros in both operands), against the panel's first `halves`
// 16-column halves (1 when the second lies wholly past N: zeros, nothing to add).
static inline __attribute__((always_inline)) void avx512_k_step(__m512 acc[8][2], const uint16_t *A, int64_t row,
                                                                int64_t kk, const uint16_t *blk, int pairs,
                                                                int halves) {
    for (int pair = 0; pair < pairs; pair++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(blk + pair * 32);
        const __m512bh b1 = halves == 2 ? (__m512bh)_mm512_loadu_si512(blk + 512 + pair * 32) : b0;
        for (int r = 0; r < 8; r++) {
            int32_t two;
            memcpy(&two, A + r * row + kk + 2 * pair, sizeof two);
            const __m512bh a = (__m512bh)_mm512_set1_epi32(two);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
            if (halves == 2) acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
        }
    }
}

// dst (8 rows x 32, row stride ldd) = start + 8 rows of A (`row` elements apart, K steps `kstep` apart) x
// `ksteps` 32-deep blocks of one panel (start as amx_kernel_32x32): per K pair, two B vectors (16 columns of
// pairs each) meet each row's pair broadcast; 16 accumulators. The last step stops after `last_pairs` pairs;
// with halves == 1 only the first 16 columns are computed (the others of dst hold their start values).
// With fetch, each K step also asks for the next 512 bytes from fetch on to be brought into the caches (see
// avx512_kernel_32x32).
static inline __attribute__((always_inline)) void avx512_kernel_8x32(
    const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A, int64_t row, int64_t kstep,
    const int64_t *koff, const uint16_t *panel, int ksteps, const float *init, int accumulate, int last_pairs,
    int halves, const char *fetch) {
    __m512 acc[8][2];
    const __m512 init0 = init ? _mm512_loadu_ps(init) : _mm512_setzero_ps();
    const __m512 init1 = init ? _mm512_loadu_ps(init + 16) : _mm512_setzero_ps();
    for (int r = 0; r < 8; r++) {
        acc[r][0] = accumulate ? _mm512_loadu_ps(src + r * lds) : init0;
        acc[r][1] = accumulate ? _mm512_loadu_ps(src + r * lds + 16) : init1;
    }
    for (int kb = 0; kb < ksteps; kb++) {
        const uint16_t *blk = panel + (int64_t)kb * 1024;
        const int64_t kk = koff ? koff[kb] : kb * kstep;
        if (kb + 1 < ksteps || last_pairs == 16) avx512_k_step(acc, A, row, kk, blk, 16, halves);
        else avx512_k_step(acc, A, row, kk, blk, last_pairs, halves);
        if (fetch)
            for (int line = 0; line < 8; line++) _mm_prefetch(fetch + kb * 512 + line * 64, _MM_HINT_T1);
    }
    for (int r = 0; r < 8; r++) {
        _mm512_storeu_ps(dst + r * ldd, acc[r][0]);
        _mm512_storeu_ps(dst + r * ldd + 16, acc[r][1]);
    }
}

static void avx512_kernel_8x32_full(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A,
                                    int64_t row, int64_t kstep, const int64_t *koff, const uint16_t *panel, int ksteps,
                                    const float *init, int accumulate, int last_pairs, const char *fetch) {
    avx512_kernel_8x32(src, lds, dst, ldd, A, row, kstep, koff, panel, ksteps, init, accumulate, last_pairs, 2, fetch);
}

static void avx512_kernel_8x32_half(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A,
                                    int64_t row, int64_t kstep, const int64_t *koff, const uint16_t *panel, int ksteps,
                                    const float *init, int accumulate, int last_pairs, const char *fetch) {
    avx512_kernel_8x32(src, lds, dst, ldd, A, row, kstep, koff, panel, ksteps, init, accumulate, last_pairs, 1, fetch);
}

// Only the groups of 8 rows that hold some of the block's `rows` (1..32) product rows are computed: a product
// of a few rows (adaLN's modulation at batch 2, say) costs a quarter of a whole block, not all of it. The rows
// past `rows` in dst are left as they were; nothing reads them. Likewise a panel's second 16 columns when
// `cols` <= 16 (dst holds its start values there), and the K pairs past the product's K in its last step.
// With next (the K block of B the next block will read, when it is not in L2 yet), each group of 8 rows asks
// for a quarter of it (ksteps x 512 bytes), spread over its K steps, so that it comes from L3 or memory while
// this block computes: on AMD Zen 4 (L2 1 MB) a slab's first row block otherwise waits for each panel in turn.
static void avx512_kernel_32x32(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A,
                                const a_layout *at, const uint16_t *panel, int ksteps, const float *init,
                                int accumulate, int rows, int cols, int last_pairs, row_job *job,
                                const uint16_t *next) {
    DIT_CHECK(!job);   // run_blocks makes row jobs for the AMX kernel only
    for (int r = 0; r < rows; r += 8)
        (cols > 16 ? avx512_kernel_8x32_full : avx512_kernel_8x32_half)(
            src + r * lds, lds, dst + r * ldd, ldd, A + (r >> 4) * at->half + (r & 15) * at->row, at->row, at->kstep,
            at->koff, panel, ksteps, init, accumulate, last_pairs,
            next ? (const char *)next + (int64_t)(r >> 3) * ksteps * 512 : NULL);
}

// ---- epilogue -----------------------------------------------------------------------------------------------

// The first `count` (1..16) of sixteen bf16 values to row r, columns k.. of a bf16 operand laid out as `at`;
// k a multiple of 8 (runs of 8 from there never cross a 32-element run of the layout).
static inline void store_bf16_run(uint16_t *dst, const a_layout *at, int r, int k, __m256bh values, int count) {
    const __m256i v = (__m256i)values;
    if (count == 16 && (k & 31) <= 16) {
        _mm256_storeu_si256((__m256i *)(dst + a_offset(at, r, k)), v);
        return;
    }
    _mm_mask_storeu_epi16(dst + a_offset(at, r, k), (__mmask8)mask16(count), _mm256_castsi256_si128(v));
    if (count > 8)
        _mm_mask_storeu_epi16(dst + a_offset(at, r, k + 8), (__mmask8)mask16(count - 8), _mm256_extracti128_si256(v, 1));
}

// The row of out that product row m goes to: m itself, or with lines (ep->line) its place among the kept
// rows; -1 for a dropped one.
static inline int64_t kept_row(const gemm_epilogue *ep, int64_t m) {
    if (!ep || !ep->line) return m;
    return m % ep->line < ep->line_keep ? m / ep->line * ep->line_keep + m % ep->line : -1;
}

// transpose_out: out[n, m] (+ bias, + out with accumulate), 16 x 16 floats of C at a time transposed in registers,
// so each output column gets a run of 16 rows. With lines (ep->line), the rows past line_keep in each line are
// dropped and the kept ones are consecutive in out: a compressing store (an expanding load to accumulate).
static void epilogue_block_transposed(float *out, int64_t ldo, const float *C, int m0, int rows, int n0, int cols,
                                      const gemm_epilogue *ep, float alpha) {
    const __m512 scale = _mm512_set1_ps(alpha);
    for (int r0 = 0; r0 < rows; r0 += 16) {
        __mmask16 keep = mask16(rows - r0);
        int64_t first = -1;   // where the first kept row goes
        for (int i = 0; i < 16; i++) {
            const int64_t o = kept_row(ep, m0 + r0 + i);
            if (o < 0) keep &= (__mmask16)~(1u << i);
            else if (first < 0 && (keep >> i & 1)) first = o;
        }
        if (!keep) continue;
        for (int c0 = 0; c0 < cols; c0 += 16) {
            __m512 col[16];
            for (int i = 0; i < 16; i++) col[i] = _mm512_load_ps(C + (r0 + i) * 32 + c0);   // rows past `rows`: dropped
            transpose_16x16(col);
            for (int j = 0; j < 16 && c0 + j < cols; j++) {
                const int n = n0 + c0 + j;
                float *o = out + (int64_t)n * ldo + first;
                __m512 v = _mm512_mul_ps(scale, col[j]);
                if (ep->bias) v = _mm512_add_ps(v, _mm512_set1_ps(ep->bias[n]));
                if (keep == 0xffff) {
                    if (ep->accumulate) v = _mm512_add_ps(_mm512_loadu_ps(o), v);
                    _mm512_storeu_ps(o, v);
                } else {
                    if (ep->accumulate) v = _mm512_add_ps(_mm512_maskz_expandloadu_ps(keep, o), v);
                    _mm512_mask_compressstoreu_ps(o, keep, v);
                }
            }
        }
    }
}

// 32 floats (lo, hi) of a row of values the training forward keeps for its backward (pre_gelu, product): with
// stream (the row starts a cache line), stores that bypass the caches. Those matrices are read again only when
// the backward reaches the layer, long after they have left the caches, so a plain store's read of each line
// first is wasted: streaming them made a DiT-S/2 training step 4-5% faster on the AMX guest.
static inline void store_kept_row(float *dst, __m512 lo, __m512 hi, int stream) {
    if (stream) {
        _mm512_stream_ps(dst, lo);
        _mm512_stream_ps(dst + 16, hi);
    } else {
        _mm512_storeu_ps(dst, lo);
        _mm512_storeu_ps(dst + 16, hi);
    }
}

// The epilogues of a full 32 x 32 block (no lines, no transposed output) that inference and training spend
// their time in, both sixteen-column halves of a row at once: bias (+ GELU,
// keeping the value before it) into a whole bf16 operand whose 32 columns are one contiguous run of a row
// (fc1 feeding fc2; FULL_TO16), the gated residual (keeping the product) into out (proj and fc2; FULL_GATE),
// and the backward through a GELU (training's fc2; FULL_SLOPE). The arithmetic is epilogue_block's,
// operation for operation.
typedef enum { FULL_NONE, FULL_SLOPE, FULL_TO16, FULL_GATE } full_block_kind;

// Whether the pre_gelu and product rows may be streamed: they start cache lines (store_kept_row).
static int kept_rows_stream(int64_t ldo, const gemm_epilogue *ep) {
    return ldo % 16 == 0 && (!ep->pre_gelu || ((uintptr_t)ep->pre_gelu & 63) == 0) &&
           (!ep->product || ((uintptr_t)ep->product & 63) == 0);
}

static full_block_kind full_block_kind_of(const gemm_epilogue *ep, int m0, int n0) {
    // into bf16 when the block's 32 columns are one run of the operand's layout: a whole operand, or a slice (a
    // head of attention written into the projection's operand) that covers them, 32-aligned
    const int to16 = ep->out16 && (!ep->out16_cols || n0 + 32 <= ep->out16_cols) && (ep->out16_row0 + m0) % 32 == 0 &&
                     (ep->out16_col0 + n0) % 32 == 0;
    const int slope = ep->gelu_grad_of && !ep->out16 && !ep->gate && !ep->product && !ep->gelu;
    if (ep->line || ep->transpose_out || ep->accumulate || (ep->gelu_grad_of && !slope) ||
        (!to16 && !ep->gate && !slope) || (to16 && (ep->gate || ep->product)) || (ep->gate && ep->gelu))
        return FULL_NONE;
    return slope ? FULL_SLOPE : to16 ? FULL_TO16 : FULL_GATE;
}

// A FULL_TO16 or FULL_GATE block's epilogue, set up once and then done a row at a time: by the AMX kernel of
// the next block between its K steps (run_blocks), or all at once (epilogue_full_block).
typedef struct {
    row_job job;   // first: the kernel sees only this
    const float *C;
    __m512 scale, bias0, bias1;
    int64_t ldo;
    int stream;   // kept rows (pre_gelu, product) streamed
    // FULL_TO16
    uint16_t *dst;
    int64_t half, row;   // the bf16 operand's layout steps for rows r >> 4 and r & 15
    // head-major with the block's columns in two heads' parts: the first `split` of them in dst, the rest from
    // the start of the next part's rows, dst_next (row stride `row` too)
    uint16_t *dst_next;
    int split;
    float *pre;
    int gelu, stream16;
    // FULL_GATE
    const float *gate, *res;
    float *product, *o;
    int64_t gate_stride;
    int gate_rows, m0;
} block_rows;

static void to16_row(row_job *job, int r) {
    const block_rows *b = (const block_rows *)job;
    __m512 lo = _mm512_add_ps(_mm512_mul_ps(b->scale, _mm512_load_ps(b->C + r * 32)), b->bias0);
    __m512 hi = _mm512_add_ps(_mm512_mul_ps(b->scale, _mm512_load_ps(b->C + r * 32 + 16)), b->bias1);
    if (b->gelu) {
        if (b->pre) store_kept_row(b->pre + r * b->ldo, lo, hi, b->stream);
        lo = gelu_tanh512(lo), hi = gelu_tanh512(hi);
    }
    // the row's 32 columns: one run of the layout (k a multiple of 32)
    const __m512i run = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    uint16_t *d = b->dst + (r >> 4) * b->half + (r & 15) * b->row;
    if (b->split < 32) {   // lane i < split to d + i, lane i >= split to the next part's row + i - split
        const __mmask32 first = (__mmask32)((1u << b->split) - 1);
        _mm512_mask_storeu_epi16(d, first, run);
        _mm512_mask_storeu_epi16(b->dst_next + r * b->row - b->split, (__mmask32)~first, run);
    } else if (b->stream16) {
        _mm512_stream_si512((__m512i *)d, run);
    } else {
        _mm512_storeu_si512(d, run);
    }
}

static void gate_row(row_job *job, int r) {
    const block_rows *b = (const block_rows *)job;
    __m512 lo = _mm512_mul_ps(b->scale, _mm512_load_ps(b->C + r * 32));
    __m512 hi = _mm512_mul_ps(b->scale, _mm512_load_ps(b->C + r * 32 + 16));
    if (b->product) store_kept_row(b->product + r * b->ldo, lo, hi, b->stream);
    const float *g = b->gate + (int64_t)((b->m0 + r) / b->gate_rows) * b->gate_stride, *res = b->res + r * b->ldo;
    lo = _mm512_fmadd_ps(_mm512_loadu_ps(g), _mm512_add_ps(lo, b->bias0), _mm512_loadu_ps(res));
    hi = _mm512_fmadd_ps(_mm512_loadu_ps(g + 16), _mm512_add_ps(hi, b->bias1), _mm512_loadu_ps(res + 16));
    float *o = b->o + r * b->ldo;
    _mm512_storeu_ps(o, lo);
    _mm512_storeu_ps(o + 16, hi);
}

// The bias of the block's columns; none: -0, which leaves every value as it is (+0 would turn -0 into +0).
static __m512 bias_half(const gemm_epilogue *ep, int n) {
    return ep->bias ? _mm512_loadu_ps(ep->bias + n) : _mm512_set1_ps(-0.0f);
}

// b: the row job of block (m0, n0)'s epilogue from its sums C, of kind FULL_TO16 or FULL_GATE.
static void block_rows_setup(block_rows *b, full_block_kind kind, float *out, int64_t ldo, const float *C, int m0,
                             int n0, const gemm_epilogue *ep, float alpha) {
    *b = (block_rows){.job = {.run = kind == FULL_TO16 ? to16_row : gate_row, .rows = 32},
                      .C = C,
                      .scale = _mm512_set1_ps(alpha),
                      .bias0 = bias_half(ep, n0),
                      .bias1 = bias_half(ep, n0 + 16),
                      .ldo = ldo,
                      .stream = kept_rows_stream(ldo, ep)};
    if (kind == FULL_TO16) {
        b->split = 32;
        if (ep->head_major_hd) {   // the block's 32 rows: rows t0.. of one head's part (or two), hd apart
            const int T = ep->head_major_T, hd = ep->head_major_hd;
            const int64_t part = (int64_t)(m0 / T) * ep->head_major_groups + n0 / hd;
            b->dst = ep->out16 + (part * T + m0 % T) * hd + n0 % hd;
            b->row = hd, b->half = 16 * (int64_t)hd;
            if (n0 % hd + 32 > hd) b->split = hd - n0 % hd, b->dst_next = ep->out16 + ((part + 1) * T + m0 % T) * hd;
        } else {
            const a_layout *at = ep->out16_layout;
            b->dst = ep->out16 + a_offset(at, ep->out16_row0 + m0, ep->out16_col0 + n0);
            b->row = at->row, b->half = at->half;
        }
        b->gelu = ep->gelu;
        b->pre = ep->gelu && ep->pre_gelu ? ep->pre_gelu + (int64_t)m0 * ldo + n0 : NULL;
        // streamed (training's kept qkv) when every row's run starts a cache line
        b->stream16 = ep->stream_out && ((uintptr_t)b->dst & 63) == 0 && b->row % 32 == 0 && b->half % 32 == 0;
        return;
    }
    b->o = out + (int64_t)m0 * ldo + n0;
    b->product = ep->product ? ep->product + (int64_t)m0 * ldo + n0 : NULL;
    b->res = ep->residual ? ep->residual + (int64_t)m0 * ldo + n0 : b->o;
    b->gate = ep->gate + n0, b->gate_stride = ep->gate_stride, b->gate_rows = ep->gate_rows, b->m0 = m0;
}

// The rows of a job not yet done.
static void row_job_finish(row_job *job) {
    while (job->next < job->rows) job->run(job, job->next++);
}

// A full block's epilogue when it is one of the kinds above; 0 when not.
static int epilogue_full_block(float *out, int64_t ldo, const float *C, int m0, int n0, const gemm_epilogue *ep,
                               float alpha) {
    const full_block_kind kind = full_block_kind_of(ep, m0, n0);
    if (kind == FULL_NONE) return 0;
    if (kind != FULL_SLOPE) {
        block_rows b;
        block_rows_setup(&b, kind, out, ldo, C, m0, n0, ep, alpha);
        row_job_finish(&b.job);
        return 1;
    }
    const __m512 scale = _mm512_set1_ps(alpha), bias0 = bias_half(ep, n0), bias1 = bias_half(ep, n0 + 16);
    // FULL_SLOPE: out = (alpha C + bias) * gelu_tanh'(x)
    const float *x = ep->gelu_grad_of + (int64_t)m0 * ldo + n0;
    float *o = out + (int64_t)m0 * ldo + n0;
    bf16_both *b = ep->both;
    __m512 v[32][2], act[32][2];   // act: gelu_tanh(x), from the slope's sigmoid (gelu_act)
    for (int r = 0; r < 32; r++, x += ldo, o += ldo) {
        const __m512 lo = _mm512_add_ps(_mm512_mul_ps(scale, _mm512_load_ps(C + r * 32)), bias0);
        const __m512 hi = _mm512_add_ps(_mm512_mul_ps(scale, _mm512_load_ps(C + r * 32 + 16)), bias1);
        if (ep->gelu_act) {
            v[r][0] = _mm512_mul_ps(lo, gelu_tanh_grad_value512(_mm512_loadu_ps(x), &act[r][0]));
            v[r][1] = _mm512_mul_ps(hi, gelu_tanh_grad_value512(_mm512_loadu_ps(x + 16), &act[r][1]));
        } else {
            v[r][0] = _mm512_mul_ps(lo, gelu_tanh_grad512(_mm512_loadu_ps(x)));
            v[r][1] = _mm512_mul_ps(hi, gelu_tanh_grad512(_mm512_loadu_ps(x + 16)));
        }
        if (!b) {   // with both, the block goes only there (gemm_epilogue.both)
            _mm512_storeu_ps(o, v[r][0]);
            _mm512_storeu_ps(o + 16, v[r][1]);
        }
    }
    if (b) {   // this block's part of the next backward's operands, as bf16_both_finish would make it
        const a_layout at_rows = a_layout_tiles(b->Np), at_cols = a_layout_tiles(b->Mp);
        float *sums = b->chunk_sums + (int64_t)(m0 / 16) * b->Np + n0;
        convert_32x32_streamed(v, b->rows16, &at_rows, b->cols16, &at_cols, m0, n0, sums, sums + b->Np);
    }
    if (ep->gelu_act) {   // gelu_tanh(x) of the block into the packed B[n, m]
        const bf16_packed *packed = ep->gelu_act;
        for (int r = 0; r < 32; r += 2)
            for (int c = 0; c < 2; c++)
                store_pair_row(packed->data, packed->Kp / 32, n0 + 16 * c, m0 + r, act[r][c], act[r + 1][c]);
    }
    return 1;
}

// The epilogue's scale of the sums: alpha, where 0 (unset) means 1.
static float epilogue_alpha(const gemm_epilogue *ep) { return ep && ep->alpha != 0.0f ? ep->alpha : 1.0f; }

// Rows [m0, m0 + rows) and columns [n0, n0 + cols) of out from the 32 x 32 block C, sixteen columns at a time.
static void epilogue_block(float *out, int64_t ldo, const float *C, int m0, int rows, int n0, int cols,
                           const gemm_epilogue *ep) {
    const float alpha = epilogue_alpha(ep);
    if (ep && rows == 32 && cols == 32 && epilogue_full_block(out, ldo, C, m0, n0, ep, alpha)) return;
    if (ep && ep->transpose_out) {
        epilogue_block_transposed(out, ldo, C, m0, rows, n0, cols, ep, alpha);
        return;
    }
    const __m512 scale = _mm512_set1_ps(alpha);
    // Columns written: [n0, n0 + cols) of out; or of a bf16 operand (out16) up to its own end, which for a
    // whole operand is the panel's (its K padding gets zeros) and for a slice (out16_cols) the slice's.
    const int out16 = ep && ep->out16;
    const int limit = !out16 ? n0 + cols : ep->out16_cols ? ep->out16_cols : n0 + 32;
    for (int h = 0; h < 2 && n0 + h * 16 < limit; h++) {
        const int left = cols - h * 16, col = n0 + h * 16, write = limit - col < 16 ? limit - col : 16;
        const __mmask16 mask = mask16(left);
        const __m512 bias = ep && ep->bias ? _mm512_maskz_loadu_ps(mask, ep->bias + col) : _mm512_set1_ps(-0.0f);
        // The gate row of output row m is m / gate_rows, stepped along instead of divided per row.
        const int gated = ep && ep->gate;
        int gate_row = gated ? m0 / ep->gate_rows : 0, gate_left = gated ? ep->gate_rows - m0 % ep->gate_rows : 0;
        for (int r = 0; r < rows; r++) {
            const int64_t m = kept_row(ep, m0 + r);   // with lines, dropped rows are skipped
            if (m < 0) continue;
            __m512 v = _mm512_mul_ps(scale, _mm512_load_ps(C + r * 32 + h * 16));
            if (ep && ep->product) _mm512_mask_storeu_ps(ep->product + m * ldo + col, mask, v);
            if (!ep) {
                _mm512_mask_storeu_ps(out + m * ldo + col, mask, v);
                continue;
            }
            v = _mm512_add_ps(v, bias);
            if (ep->gelu) {
                if (ep->pre_gelu && mask) _mm512_mask_storeu_ps(ep->pre_gelu + m * ldo + col, mask, v);
                v = gelu_tanh512(v);
            }
            if (ep->gelu_grad_of)
                v = _mm512_mul_ps(v, gelu_tanh_grad512(_mm512_maskz_loadu_ps(mask, ep->gelu_grad_of + m * ldo + col)));
            if (out16) {   // bf16 into the next product's A, where it reads it; zeros past cols
                DIT_CHECK(!ep->head_major_hd);   // whole blocks only (epilogue_full_block)
                store_bf16_run(ep->out16, ep->out16_layout, ep->out16_row0 + (int)m, ep->out16_col0 + col,
                               _mm512_cvtneps_pbh(_mm512_maskz_mov_ps(mask, v)), write);
                continue;
            }
            float *o = out + m * ldo + col;
            if (ep->gate) {
                const float *g = ep->gate + (int64_t)gate_row * ep->gate_stride + col;
                if (--gate_left == 0) gate_row++, gate_left = ep->gate_rows;
                const float *res = ep->residual ? ep->residual + m * ldo + col : o;
                v = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, g), v, _mm512_maskz_loadu_ps(mask, res));
            } else if (ep->accumulate) {
                v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, o), v);
            }
            _mm512_mask_storeu_ps(o, mask, v);
        }
    }
}

// ---- the driver -------------------------------------------------------------------------------------------

// The driver's work buffers are per thread and only grow (the sampler's steady state allocates nothing); a
// buffer is freed when its thread ends (grow_buffer, base/thread_exit.h).

// The bf16 copy of A.
static _Thread_local grow_buffer a_buffer;

static uint16_t *a_workspace(size_t elems) { return grow_buffer_get(&a_buffer, elems * sizeof(uint16_t)); }

// Blocking (measured on the XL, S and Fashion-MNIST shapes, forward and weight gradients, docs/precision.md):
// K is walked in blocks of at most KC_MAX (a 32 x KC block of A, up to 128 KB, meets a slab of up to SLAB_BYTES
// of packed B, which stays in L2 while it meets every row block of a chunk of CHUNK_BLOCKS). Partial sums wait
// between K blocks in out itself or in a per-thread scratch, stored and reloaded exactly, so the sum is
// bit-identical to an unblocked one and the K blocks depend only on K (batch invariance). Whole K blocks up to
// 1152 (all of K for the XL and S products but fc2) were 2-22% faster than blocks of 384 with 16-row-block
// chunks and 768 KB slabs: the partial sums of a chunk and slab (2 MB) no longer travel to L3 and back. Blocks
// of up to 2048 (thirteenth sitting, AMX guest: the training's weight gradients, K = 2048 tokens, in one block;
// S fc2 in one, XL fc2 in three of 1536) were 1-22% faster again than 1152 (2048^3 1,744 -> 2,007 GFLOP/s,
// XL fc2 1,792 -> 1,908, the S/2 weight gradients 1,548 -> 1,767-1,895); 3072 and 4608 were slower on XL fc2.
enum { KC_MAX = 2048, SLAB_BYTES = 512 << 10, CHUNK_BLOCKS = 8, BIG_B_BYTES = 4 << 20 };

// K steps (32 deep) per K block: Kp split into equal blocks of at most KC_MAX.
static int block_ksteps(int Kp) {
    const int steps = Kp / 32, blocks = (steps * 32 + KC_MAX - 1) / KC_MAX;
    return (steps + blocks - 1) / blocks;
}

// K steps per K block of a product whose A is laid out as `at`: an indirect A (a conv reading its input in place)
// revisits the same lines tap after tap, so its whole K fits in L1 as one block; any other, block_ksteps.
static int k_block_steps(const a_layout *at, int Kp) { return at->koff ? Kp / 32 : block_ksteps(Kp); }

// A B larger than the caches keep: the weights of a large model, read from memory every forward.
static int b_from_memory(const bf16_packed *B) { return (int64_t)B->Np * B->Kp * 2 > BIG_B_BYTES; }

// Panels per slab of B for K blocks of `ksteps` steps. A B from memory (b_from_memory) taken whole along K (one
// K block) goes in slabs of BIG_B_PANELS panels: its first row block then waits for 144 KB from memory at a time
// instead of 504 KB. Measured on the AMX guest (seventeenth sitting, interleaved forwards): DiT-XL/2 x 2 2.0-2.5%
// faster (qkv, fc1 and adaLN; 10-12 of 12 in four runs), DiT-B/2 x 4 1%; one panel alike on XL; for every
// product, fc2 (K in three blocks: its A, 4.7 MB, read again for every slab) included, 6% slower; for the S/2
// products (B in cache) 1% slower.
enum { BIG_B_PANELS = 2 };

static int slab_panels(int ksteps, const bf16_packed *B) {
    if (ksteps * 32 >= B->Kp && b_from_memory(B)) return BIG_B_PANELS;
    const int panels = SLAB_BYTES / (ksteps * 32 * 32 * 2);
    return panels < 1 ? 1 : panels;
}

// A micro-kernel: one 32 x 32 block of which the first `rows` rows and `cols` columns are wanted, whose last K
// step holds `last_pairs` (1..16) K pairs that are not zero padding.
// With job (the AMX kernel only; NULL for the other), the job's rows left are done too (amx_kernel_32x32).
// next: the K block of B the next block reads, from beyond L2 (or NULL); the AVX512-BF16 kernel fetches it.
typedef void (*kernel_fn)(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A,
                          const a_layout *at, const uint16_t *panel, int ksteps, const float *init, int accumulate,
                          int rows, int cols, int last_pairs, row_job *job, const uint16_t *next);

// The AMX kernel computes whole tiles of 16 rows, 16 columns and 32 K whatever the wanted part is; a block of at
// most 16 wanted rows (an adaLN product's batch rows, the last row block of an odd M) takes the 16-row kernel,
// whose rows are the 32-row kernel's bit for bit at half its tile products and A loads. XL/2 x 2 (its adaLN
// products, M = 2, stream 446 MB of weights a forward) 0.98-0.99 of the time (10-12 of 16 rounds, twice);
// S/2 x 8 unchanged. Seventeenth sitting.
//
// Blocks of at least STREAM_MIN_KSTEPS K steps load their tiles with the hint that the data will not be used
// again soon (tileloaddt1, amx_loads): from 12 steps on, the block's 32 rows of A and its B panel (4 KB a step)
// no longer fit the 48 KB L1 together, so they would only push out of it what the row jobs and the next blocks
// use. B's tiles always; A's unless A is indirect (at->koff: a conv reading its input in place, whose lines the
// next taps read again): with A's too the VAE's bf16 decode and encode were 8% slower (9 of 9 rounds), with B's
// alone 2-3% faster than with neither (8 of 9). Measured on the AMX guest (eighteenth sitting), each workload
// run alternately with and without in one process: DiT-XL/2 x 2 forward 0.964-1.008 of the time, median 0.984
// over five runs of 16 rounds (new faster in 16, 6, 9, 16 and 13 of them; the gain is least in the guest's fast
// phases), DiT-B/2 x 4 0.978 (11 of 16), DiT-S/2 x 8 0.994, the DiT-S/2 training step 0.978 (13 of 15); the
// Fashion-MNIST model's forward 1.006 (17 of 40 faster: noise) and training step 1.010. With the hint on every
// block (attention's small products too) XL and the S/2 step alike, the Fashion-MNIST forward 1.018 and step
// 1.02-1.024 slower; with it only from 13 steps (S/2's K = 384 products without it) the S/2 forward 2.5-3%
// slower. The bits are the same either way.
enum { STREAM_MIN_KSTEPS = 12 };

static void amx_kernel_block(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A,
                             const a_layout *at, const uint16_t *panel, int ksteps, const float *init, int accumulate,
                             int rows, int cols, int last_pairs, row_job *job, const uint16_t *next) {
    (void)cols, (void)last_pairs, (void)next;
    const amx_loads loads = ksteps < STREAM_MIN_KSTEPS ? AMX_LOADS_CACHED
                            : at->koff                 ? AMX_LOADS_STREAM_B
                                                       : AMX_LOADS_STREAM_BOTH;
    if (rows <= 16) amx_kernel_16x32(src, lds, dst, ldd, A, at, panel, ksteps, init, accumulate, job, loads);
    else amx_kernel_32x32(src, lds, dst, ldd, A, at, panel, ksteps, init, accumulate, job, loads);
}

// Epilogues the kernel does itself, by its start values: a plain store, a bias (every row starts from it), or
// accumulation (the sums start from out). Full 32 x 32 blocks then go straight into out with no pass over
// a copy; edge blocks take the same arithmetic through a copy, so a row's result does not depend on which
// kind of block it fell in (batch invariance).
static int epilogue_in_kernel(const gemm_epilogue *ep) {
    return !ep || (!ep->gelu && !ep->gelu_grad_of && !ep->product && !ep->gate && !ep->transpose_out && !ep->out16 &&
                   (ep->alpha == 0.0f || ep->alpha == 1.0f) && !(ep->bias && ep->accumulate));
}

// Epilogues whose out is written, never read, in the usual layout: a full block's partial sums may wait in out.
static int out_is_scratch(const gemm_epilogue *ep) {
    return !ep || (!ep->gate && !ep->accumulate && !ep->transpose_out && !ep->out16);
}

// Partial sums of the blocks that cannot wait in out, 32 x 32 floats each, per thread; only grows.
static _Thread_local grow_buffer sum_buffer;

static float *sum_workspace(size_t blocks) { return grow_buffer_get(&sum_buffer, blocks * 1024 * sizeof(float)); }

// A thread's partial-sum scratch could not be allocated. The message goes to the calling thread: the error
// text is per thread, and the thread that failed may have been another one of the parallel region.
static dit_status partial_sums_failed(void) {
    return dit_set_error("out of memory allocating a thread's partial sums of the bf16 GEMM");
}

// Ask for the 32 rows x 32 floats at p (row stride ld) to be brought to L1: rows the next block reads, fetched
// from L2/L3 while the kernel works on this one (the rows lie a page apart, which the hardware prefetchers do
// not follow).
static inline void prefetch_block(const float *p, int64_t ld) {
    for (int r = 0; r < 32; r++) {
        _mm_prefetch((const char *)(p + r * ld), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + r * ld + 16), _MM_HINT_T0);
    }
}

// The K block of B that the block after (row block first/last of its slab, panel p, K block of `ksteps` steps
// from k0) reads while it is not in L2 yet, else NULL. Only a slab's first row block reads panels from L3 or
// memory (the rest find them in L2): its next panel, and after the slab's last block the next K block (when it
// is as long as this one: the kernel fetches `ksteps` steps from the pointer, which must stay inside B) or the
// next slab's first panel.
static const uint16_t *next_from_far(const bf16_packed *B, int first_rows, int last_rows, int p, int s0, int s1,
                                     int p1, int k0, int ksteps, int last_k) {
    const int Kp = B->Kp;
    if (first_rows && p + 1 < s1) return B->data + (int64_t)(p + 1) * 32 * Kp + (int64_t)k0 * 32;
    if (!last_rows || p + 1 < s1) return NULL;
    if (!last_k) {
        const int k_next = k0 + ksteps * 32;
        return k_next + ksteps * 32 <= Kp ? B->data + (int64_t)s0 * 32 * Kp + (int64_t)k_next * 32 : NULL;
    }
    return s1 < p1 ? B->data + (int64_t)s1 * 32 * Kp : NULL;
}

// Output blocks [mb0, mb1) x panels [p0, p1): slabs of panels, K blocks, row blocks, panels.
static dit_status run_blocks(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at, const bf16_packed *B,
                             int M, int mb0, int mb1, int p0, int p1, kernel_fn kernel, const gemm_epilogue *ep) {
    // The AMX kernel does the previous block's epilogue rows between its K steps (a row job, when the block is a
    // full one of a row-by-row kind), so the block sums alternate between two buffers: the kernel writes one
    // while the job reads the other.
    float Cb[2][32 * 32] __attribute__((aligned(64)));
    block_rows jobs[2];
    row_job *pending = NULL;   // the previous block's epilogue, not started yet
    int cur = 0;
    const int interleave = kernel == amx_kernel_block;
    float bias_block[32] __attribute__((aligned(64)));
    const int Kp = B->Kp, ksteps_max = k_block_steps(at, Kp);
    const int slab = slab_panels(ksteps_max, B);
    const int in_kernel = epilogue_in_kernel(ep), from_out = in_kernel && ep && ep->accumulate;
    // The bias is where the sums start (the kernel's init) when the kernel does the epilogue, and for a plain
    // bf16 output (op_qkv), so that its values are those of the float32 output rounded, bit for bit; the
    // epilogue then adds none.
    const int bias_init = ep && ep->bias &&
                          (in_kernel || (ep->out16 && !ep->gelu && !ep->gelu_grad_of && !ep->gate && !ep->product &&
                                         (ep->alpha == 0.0f || ep->alpha == 1.0f)));
    const float *bias = bias_init ? ep->bias : NULL;
    gemm_epilogue rest;   // the epilogue after the kernel
    if (bias_init && !in_kernel) rest = *ep, rest.bias = NULL, ep = &rest;
    const int one_block = ksteps_max * 32 >= Kp, rows_of_blocks = mb1 - mb0;
    const int stream = ep && ep->stream_out && out && ((uintptr_t)out & 63) == 0 && ldo % 16 == 0;
    float *sums = NULL;   // partial sums of block (mb, p) at sums + ((mb - mb0) * slab + p - s0) * 1024
    if (!one_block && !(sums = sum_workspace((size_t)rows_of_blocks * slab))) return DIT_ERR;
    for (int s0 = p0; s0 < p1; s0 += slab) {
        const int s1 = s0 + slab < p1 ? s0 + slab : p1;
        for (int k0 = 0; k0 < Kp; k0 += ksteps_max * 32) {
            const int ksteps = (Kp - k0) / 32 < ksteps_max ? (Kp - k0) / 32 : ksteps_max;
            const int first = k0 == 0, last = k0 + ksteps * 32 >= Kp;
            // K pairs of the last step that are not zero padding (a K such as a head of 72: 4 of 16)
            const int last_pairs = last ? (B->K - (Kp - 32) + 1) / 2 : 16;
            for (int mb = mb0; mb < mb1; mb++) {
                const int m0 = mb * 32, rows = M - m0 < 32 ? M - m0 : 32;
                // out's row of row m0; with lines (ep->line), a block is whole only if its 32 rows are all kept
                int64_t out_row = m0;
                int whole_rows = rows == 32;
                if (ep && ep->line) {
                    out_row = m0 / ep->line * ep->line_keep + m0 % ep->line;
                    whole_rows &= m0 % ep->line + 32 <= ep->line_keep;
                }
                // this K block of the row block: its first step, or (indirect) the offsets from its first step on
                const uint16_t *a = A16 + mb * at->block + (at->koff ? 0 : k0 / 32 * at->kstep);
                a_layout from_k0 = *at;
                if (at->koff) from_k0.koff += k0 / 32;
                for (int p = s0; p < s1; p++) {
                    const int n0 = p * 32, cols = B->N - n0 < 32 ? B->N - n0 : 32, full = whole_rows && cols == 32;
                    float *C = Cb[cur];
                    row_job *job = pending;   // done within this block's kernel, whichever call below it is
                    pending = NULL;
                    const uint16_t *panel = B->data + (int64_t)p * 32 * Kp + (int64_t)k0 * 32;
                    const uint16_t *next = next_from_far(B, mb == mb0, mb == mb1 - 1, p, s0, s1, p1, k0, ksteps, last);
                    float *block = out ? out + out_row * ldo + n0 : NULL;   // NULL: bf16 output (out16)
                    const float *init = NULL;   // the start values of every row when the kernel adds the bias
                    if (first && bias_init) {
                        init = bias + n0;   // a full panel reads the bias in place; an edge one, padded
                        if (cols < 32) {
                            for (int j = 0; j < 32; j++) bias_block[j] = j < cols ? bias[n0 + j] : 0.0f;
                            init = bias_block;
                        }
                    }
                    // where the partial sums wait: out (a full block whose out may hold them), else the scratch
                    float *wait = full && (in_kernel || out_is_scratch(ep)) ? block : NULL;
                    int64_t ldw = ldo;
                    if (!wait && !one_block) wait = sums + ((int64_t)(mb - mb0) * slab + p - s0) * 1024, ldw = 32;
                    const float *src = wait;
                    int64_t lds = ldw;
                    if (first && from_out && !full) {   // an edge block's sums start from out's values
                        memset(C, 0, sizeof Cb[0]);
                        for (int r = 0; r < rows; r++) {
                            const int64_t o = kept_row(ep, m0 + r);
                            if (o >= 0) memcpy(C + r * 32, out + o * ldo + n0, cols * 4);
                        }
                        src = C, lds = 32;
                    } else if (first && from_out) {
                        src = block, lds = ldo;
                    }
                    const int accumulate = !first || from_out;
                    // The next panel's block's GELU inputs (the backward's slope), asked for while this one runs.
                    // The partial sums and the gated rows are not: since their epilogues became row jobs, asking
                    // for them was 1-2% slower on the XL forward (4 of 4 interleaved runs; S/2 forward and step,
                    // VAE: no difference), where an earlier build had been 3-8% faster with it.
                    if (p + 1 < s1 && last && ep && ep->gelu_grad_of)
                        prefetch_block(ep->gelu_grad_of + out_row * ldo + n0 + 32, ldo);
                    if (!last) {
                        kernel(src, lds, wait, ldw, a, &from_k0, panel, ksteps, init, accumulate, rows, cols, last_pairs, job, next);
                        continue;
                    }
                    if (full && in_kernel && stream) {   // through C, then past the caches into out
                        kernel(src, lds, C, 32, a, &from_k0, panel, ksteps, init, accumulate, rows, cols, last_pairs, job, next);
                        for (int r = 0; r < 32; r++) store_kept_row(block + r * ldo, _mm512_load_ps(C + r * 32),
                                                                    _mm512_load_ps(C + r * 32 + 16), 1);
                        continue;
                    }
                    if (full && in_kernel) {   // the result straight into out
                        kernel(src, lds, block, ldo, a, &from_k0, panel, ksteps, init, accumulate, rows, cols, last_pairs, job, next);
                        continue;
                    }
                    kernel(src, lds, C, 32, a, &from_k0, panel, ksteps, init, accumulate, rows, cols, last_pairs, job, next);
                    full_block_kind kind;
                    if (in_kernel) {
                        for (int r = 0; r < rows; r++) {
                            const int64_t o = kept_row(ep, m0 + r);
                            if (o >= 0) memcpy(out + o * ldo + n0, C + r * 32, cols * 4);
                        }
                    } else if (interleave && full && (kind = full_block_kind_of(ep, m0, n0)) >= FULL_TO16) {
                        block_rows_setup(&jobs[cur], kind, out, ldo, C, m0, n0, ep, epilogue_alpha(ep));
                        pending = &jobs[cur].job;   // done by the next block's kernel, or below
                        cur ^= 1;
                    } else {
                        epilogue_block(out, ldo, C, m0, rows, n0, cols, ep);
                    }
                }
            }
        }
    }
    if (pending) row_job_finish(pending);
    if (ep && (ep->pre_gelu || ep->product || ep->stream_out || ep->both)) _mm_sfence();   // streamed rows ordered first
    return DIT_OK;
}

// gemm_bf16's copy of A in rows instead of tiles: only for measuring one against the other (bench_gemm's
// "bf16-amx-rows" figures).
static int use_rows;
void gemm_bf16_use_row_layout(int on) { use_rows = on; }

// The split of the output blocks over the threads. Rows go in chunks of about CHUNK_BLOCKS row blocks (equal
// sizes); each thread's share of a chunk is a contiguous range of its panels, or of its row blocks when there are
// few panels (a narrow output), cut into UNITS_PER_THREAD units. A thread's queue is its units, chunk after
// chunk; it takes them from the front, and a thread whose queue is empty takes the others' units from the back.
// So when the cores run at the same speed each does its own share, and when one is slower (the cores of a
// virtual machine or of a hybrid CPU need not run alike: the two this was written on differed up to 3x in AMX
// rate), a faster one takes over the end of its queue. Each output block is computed whole by one thread, in the
// same order whichever thread it is, so results do not depend on who took which unit.
enum { UNITS_PER_THREAD = 4 };

typedef struct {
    int threads, units;              // units in each thread's queue
    int chunk_blocks, per_chunk;     // row blocks per chunk; units per thread per chunk
    unsigned long long *claims;      // per thread: (back << 32) | front, the queue's untaken units [front, back)
} work_queues;

// Take unit `front` of thread t's queue (from_back: unit back - 1 instead); -1 when the queue is empty.
static int take_unit(work_queues *q, int t, int from_back) {
    unsigned long long seen = __atomic_load_n(&q->claims[t], __ATOMIC_ACQUIRE);
    for (;;) {
        const unsigned front = (unsigned)seen, back = (unsigned)(seen >> 32);
        if (front >= back) return -1;
        const unsigned long long next = from_back ? ((unsigned long long)(back - 1) << 32) | front : seen + 1;
        if (__atomic_compare_exchange_n(&q->claims[t], &seen, next, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return (int)(from_back ? back - 1 : front);
    }
}

// Unit i of thread t's queue: the output blocks it covers.
static dit_status run_unit(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at, const bf16_packed *B,
                           int M, kernel_fn kernel, const gemm_epilogue *ep, const work_queues *q, int t, int i) {
    const int MB = round_up(M, 32) / 32, panels = B->Np / 32, threads = q->threads, units = q->per_chunk;
    const int c0 = i / units * q->chunk_blocks, u = i % units;
    const int c1 = c0 + q->chunk_blocks < MB ? c0 + q->chunk_blocks : MB;
    const int by_panels = panels >= 2 * threads || c1 - c0 < threads, extent = by_panels ? panels : c1 - c0;
    const int s0 = (int)((int64_t)extent * t / threads), s1 = (int)((int64_t)extent * (t + 1) / threads);
    const int r0 = s0 + (s1 - s0) * u / units, r1 = s0 + (s1 - s0) * (u + 1) / units;
    if (r0 >= r1) return DIT_OK;
    if (by_panels) return run_blocks(out, ldo, A16, at, B, M, c0, c1, r0, r1, kernel, ep);
    return run_blocks(out, ldo, A16, at, B, M, c0 + r0, c0 + r1, 0, panels, kernel, ep);
}

// Row blocks a chunk may hold for this B. Each chunk reads all of B once: a B larger than the caches keep
// (the weights of a large model, read from memory every forward) goes in chunks twice as long, so it is read half
// as often (DiT-XL/2 x 2, 512 rows: 0.357 -> 0.327-0.340 s a forward), while the S/2 training products, whose
// operands stay in cache, are faster with the shorter chunks (a step 0.377 -> 0.394 s with 16 blocks for all).
// Except a B walked in several K blocks whose long chunk's K block of A would not fit one core's L2 (XL's fc2,
// K = 4608 in blocks of 1536: 1.5 MB of A, on AMD Zen 4's 1 MB L2; the AMX machines' 2 MB hold it): there A's K
// block, which every slab of panels reads again, is kept in L2 by the shorter chunk. Zen 4, interleaved: that
// product 0.945 of the time (12 of 12), the XL/2 x 2 forward 0.982 (10 of 12); the same for every product from
// memory made fc1 (K = 1152, one K block) 4.6% slower, reading its 10.6 MB of B twice.
static int chunk_blocks_for(const a_layout *at, const bf16_packed *B) {
    if (!b_from_memory(B)) return CHUNK_BLOCKS;
    const int ksteps = k_block_steps(at, B->Kp);
    const int64_t long_chunk_a = (int64_t)2 * CHUNK_BLOCKS * 32 * ksteps * 64;   // bytes of A in a K block
    const long l2 = cpu_features_get()->l2_bytes;
    if (ksteps * 32 < B->Kp && l2 > 0 && long_chunk_a > l2) return CHUNK_BLOCKS;
    return 2 * CHUNK_BLOCKS;
}

// Every thread's queue full: chunks x units each. Called by one thread before any takes a unit.
static void queues_fill(work_queues *q, int threads, int M, const a_layout *at, const bf16_packed *B) {
    const int most = chunk_blocks_for(at, B), MB = round_up(M, 32) / 32, chunks = (MB + most - 1) / most;
    q->threads = threads;
    q->chunk_blocks = (MB + chunks - 1) / chunks;
    q->per_chunk = threads == 1 ? 1 : UNITS_PER_THREAD;
    q->units = chunks * q->per_chunk;
    for (int t = 0; t < threads; t++) q->claims[t] = (unsigned long long)q->units << 32;
}

// Room for the queues of a parallel region: `stack` (STACK_QUEUES words) when the threads fit, else allocated.
enum { STACK_QUEUES = 64 };

static dit_status queues_alloc(work_queues *q, unsigned long long *stack) {
    const int max_threads = omp_get_max_threads();
    q->claims = stack;
    if (max_threads > STACK_QUEUES && !(q->claims = dit_malloc(sizeof *q->claims * (size_t)max_threads)))
        return DIT_ERR;
    return DIT_OK;
}

static void queues_free(work_queues *q, const unsigned long long *stack) {
    if (q->claims != stack) free(q->claims);
}

static int others_first;
void gemm_bf16_steal_first(int on) { others_first = on; }

// The calling thread's part of the work: its own queue, then the others' from the back (with others_first, the
// others' first, then what is left of its own).
static dit_status run_share(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at, const bf16_packed *B,
                            int M, kernel_fn kernel, const gemm_epilogue *ep, work_queues *q, int thread) {
    dit_status st = DIT_OK;
    for (int k = 0; k < q->threads && st == DIT_OK; k++) {
        const int t = (thread + k + (others_first ? 1 : 0)) % q->threads;
        for (int i; st == DIT_OK && (i = take_unit(q, t, t != thread)) >= 0;)
            st = run_unit(out, ldo, A16, at, B, M, kernel, ep, q, t, i);
    }
    return st;
}

// All of the output blocks in the calling thread, one queue.
static dit_status run_serial(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at, const bf16_packed *B,
                             int M, kernel_fn kernel, const gemm_epilogue *ep) {
    unsigned long long claim;
    work_queues q = {.claims = &claim};
    queues_fill(&q, 1, M, at, B);
    return run_share(out, ldo, A16, at, B, M, kernel, ep, &q, 0);
}

static kernel_fn active_kernel(void) {
    return cpu_path_active() == CPU_PATH_AMX ? amx_kernel_block : avx512_kernel_32x32;
}

// Per-chunk row sums of A (chunks x Mp floats, chunk-major).
static _Thread_local grow_buffer row_sum_buffer;

static float *row_sum_workspace(size_t floats) { return grow_buffer_get(&row_sum_buffer, floats * sizeof(float)); }

// sums[m] += the chunks' sums of rows m0 .. m0 + 15 (those below M), chunk after chunk.
static void add_chunk_sums(float *sums, const float *chunk_sums, int chunks, int Mp, int m0, int M) {
    __m512 s = _mm512_setzero_ps();
    for (int c = 0; c < chunks; c++) s = _mm512_add_ps(s, _mm512_loadu_ps(chunk_sums + (int64_t)c * Mp + m0));
    const __mmask16 mask = mask16(M - m0);
    _mm512_mask_storeu_ps(sums + m0, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, sums + m0), s));
}

// ---- one float32 matrix as both left operands of a backward ------------------------------------------------

static _Thread_local grow_buffer both_rows, both_cols;

dit_status bf16_convert_both(const float *src, int M, int N, const uint16_t **rows16, const uint16_t **cols16,
                             float *col_sums) {
    const int Mp = round_up(M, 32), Np = round_up(N, 32), chunks = Mp / 16;
    const size_t bytes = (size_t)Mp * Np * sizeof(uint16_t);
    uint16_t *r16 = grow_buffer_get(&both_rows, bytes), *c16 = grow_buffer_get(&both_cols, bytes);
    if (!r16 || !c16) return DIT_ERR;
    float *chunk_sums = NULL;
    if (col_sums && !(chunk_sums = row_sum_workspace((size_t)chunks * Np))) return DIT_ERR;
    const a_layout at_rows = a_layout_tiles(Np), at_cols = a_layout_tiles(Mp);
    #pragma omp parallel
    {
        #pragma omp for schedule(guided)
        for (int c = 0; c < chunks; c++)
            convert_chunk(src, N, M, N, Np, r16, &at_rows, c16, &at_cols, c * 16,
                          chunk_sums ? chunk_sums + (int64_t)c * Np : NULL, 0);
        if (chunk_sums) {
            #pragma omp for schedule(guided)
            for (int n0 = 0; n0 < N; n0 += 16) add_chunk_sums(col_sums, chunk_sums, chunks, Np, n0, N);
        }
    }
    *rows16 = r16, *cols16 = c16;
    return DIT_OK;
}

void bf16_both_finish(bf16_both *b, const float *src) {
    const int M = b->M, N = b->N, Np = b->Np, chunks = b->Mp / 16;
    const int full_chunks = M / 32 * 2, full_cols = N / 32 * 32;   // what the epilogue's whole blocks made
    const a_layout at_rows = a_layout_tiles(Np), at_cols = a_layout_tiles(b->Mp);
    #pragma omp parallel for schedule(guided)
    for (int c = 0; c < chunks; c++)
        convert_chunk(src, N, M, N, Np, b->rows16, &at_rows, b->cols16, &at_cols, c * 16,
                      b->chunk_sums + (int64_t)c * Np, c < full_chunks ? full_cols : 0);
}

void bf16_both_add_sums(const bf16_both *b, float *col_sums) {
    #pragma omp parallel for schedule(guided)
    for (int n0 = 0; n0 < b->N; n0 += 16) add_chunk_sums(col_sums, b->chunk_sums, b->Mp / 16, b->Np, n0, b->N);
}

static dit_status gemm_run(float *out, int64_t ldo, const float *A, int64_t stride_m, int64_t stride_k,
                           const bf16_packed *B, int M, const gemm_epilogue *ep, int parallel) {
    if (M <= 0 || B->N <= 0) return DIT_OK;
    const int Kp = B->Kp, Mp = round_up(M, 32), MB = Mp / 32;
    const kernel_fn kernel = active_kernel();
    const int amx = kernel == amx_kernel_block;
    uint16_t *A16 = a_workspace((size_t)Mp * Kp);
    if (!A16) return DIT_ERR;
    const a_layout layout = use_rows ? a_layout_rows(Kp) : a_layout_tiles(Kp), *at = &layout;
    const int transposed = stride_k != 1, by_columns = transposed && stride_m == 1;
    // Row sums of A (ep->a_row_sums): per 16-column chunk during the conversion when A is read by columns, then
    // the chunks in order; else plain sums over each row. Either way the order does not depend on the threads.
    float *chunk_sums = NULL;
    const int chunks = Kp / 16;
    if (ep && ep->a_row_sums) {
        if (!by_columns) {
            for (int m = 0; m < M; m++) {
                float s = 0.0f;
                for (int k = 0; k < B->K; k++) s += A[m * stride_m + k * stride_k];
                ep->a_row_sums[m] += s;
            }
        } else if (!(chunk_sums = row_sum_workspace((size_t)chunks * Mp))) {
            return DIT_ERR;
        }
    }
    if (!parallel) {
        if (by_columns)
            for (int k0 = 0; k0 < Kp; k0 += 16)
                convert_chunk(A, stride_k, B->K, M, Mp, NULL, NULL, A16, at, k0,
                              chunk_sums ? chunk_sums + k0 / 16 * Mp : NULL, 0);
        else if (transposed) pack_a_rows_transposed(A16, at, Kp, A, stride_m, stride_k, M, B->K, 0, Mp);
        else pack_a_rows(A16, at, Kp, A, stride_m, stride_k, M, B->K, 0, Mp);
        if (chunk_sums)
            for (int m0 = 0; m0 < M; m0 += 16) add_chunk_sums(ep->a_row_sums, chunk_sums, chunks, Mp, m0, M);
        if (amx) amx_configure();
        return run_serial(out, ldo, A16, at, B, M, kernel, ep);
    }
    unsigned long long stack_claims[STACK_QUEUES];
    work_queues q;
    DIT_TRY(queues_alloc(&q, stack_claims));
    dit_status st = DIT_OK;
    #pragma omp parallel
    {
        #pragma omp single
        queues_fill(&q, omp_get_num_threads(), M, at, B);
        if (by_columns) {
            #pragma omp for schedule(guided)
            for (int k0 = 0; k0 < Kp; k0 += 16)
                convert_chunk(A, stride_k, B->K, M, Mp, NULL, NULL, A16, at, k0,
                              chunk_sums ? chunk_sums + k0 / 16 * Mp : NULL, 0);
            if (chunk_sums) {
                #pragma omp for schedule(guided)
                for (int m0 = 0; m0 < M; m0 += 16) add_chunk_sums(ep->a_row_sums, chunk_sums, chunks, Mp, m0, M);
            }
        } else {
            #pragma omp for schedule(guided)
            for (int rb = 0; rb < MB; rb++) {
                if (transposed) pack_a_rows_transposed(A16, at, Kp, A, stride_m, stride_k, M, B->K, rb * 32, rb * 32 + 32);
                else pack_a_rows(A16, at, Kp, A, stride_m, stride_k, M, B->K, rb * 32, rb * 32 + 32);
            }
        }
        if (amx) amx_configure();
        if (run_share(out, ldo, A16, at, B, M, kernel, ep, &q, omp_get_thread_num()) != DIT_OK) {
            #pragma omp atomic write
            st = DIT_ERR;
        }
    }
    queues_free(&q, stack_claims);
    return st == DIT_OK ? DIT_OK : partial_sums_failed();
}

// The bf16-A entry points cannot sum A's float32 values (gemm_epilogue.a_row_sums).
static dit_status row_sums_need_floats(void) {
    return dit_set_error("%s:%d: row sums of A need its float32 values (gemm_bf16)", __FILE__, __LINE__);
}

dit_status gemm_bf16_a16(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at, const bf16_packed *B, int M,
                         const gemm_epilogue *ep) {
    if (M <= 0 || B->N <= 0) return DIT_OK;
    if (ep && ep->a_row_sums) return row_sums_need_floats();
    const kernel_fn kernel = active_kernel();
    const int amx = kernel == amx_kernel_block;
    unsigned long long stack_claims[STACK_QUEUES];
    work_queues q;
    DIT_TRY(queues_alloc(&q, stack_claims));
    dit_status st = DIT_OK;
    #pragma omp parallel
    {
        #pragma omp single
        queues_fill(&q, omp_get_num_threads(), M, at, B);
        if (amx) amx_configure();
        if (run_share(out, ldo, A16, at, B, M, kernel, ep, &q, omp_get_thread_num()) != DIT_OK) {
            #pragma omp atomic write
            st = DIT_ERR;
        }
    }
    queues_free(&q, stack_claims);
    return st == DIT_OK ? DIT_OK : partial_sums_failed();
}

dit_status gemm_bf16_a16_serial(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at,
                                const bf16_packed *B, int M, const gemm_epilogue *ep) {
    if (M <= 0 || B->N <= 0) return DIT_OK;
    if (ep && ep->a_row_sums) return row_sums_need_floats();
    const kernel_fn kernel = active_kernel();
    if (kernel == amx_kernel_block) amx_configure();
    return run_serial(out, ldo, A16, at, B, M, kernel, ep) == DIT_OK ? DIT_OK : partial_sums_failed();
}

dit_status gemm_bf16(float *out, int64_t ldo, const float *A, int64_t stride_m, int64_t stride_k,
                     const bf16_packed *B, int M, const gemm_epilogue *ep) {
    return gemm_run(out, ldo, A, stride_m, stride_k, B, M, ep, 1);
}

dit_status gemm_bf16_serial(float *out, int64_t ldo, const float *A, int64_t stride_m, int64_t stride_k,
                            const bf16_packed *B, int M, const gemm_epilogue *ep) {
    return gemm_run(out, ldo, A, stride_m, stride_k, B, M, ep, 0);
}
