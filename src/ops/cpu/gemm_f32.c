// The float32 product of a linear layer, out (M, N) = inp (M, K) @ weight^T (+ bias), weight (N, K) as stored
// (PyTorch's nn.Linear), by our own AVX-512 kernel, for CPUs with AVX-512 (compiled by target attribute, so the
// file stays x86-64-v3). CPUs with AVX2 only keep OpenBLAS sgemm, one call per image (src/ops/dispatch.c): an
// AVX2 version of this kernel (6 rows x 16 columns) ran at half of sgemm's rate on the Ice Lake Xeon.
//
// Why not OpenBLAS sgemm for this: an sgemm call packs the whole weight before it multiplies, and its kernels
// depend on the shape (a small-matrix kernel below a size, other K blocking above one), so an output row is
// only the same whatever the batch if every call has the same shape: one call per image. At 64 tokens per
// image (the shipped Fashion-MNIST model) that repacks each weight for 64 rows and the packing took a third
// of sampling (Ice Lake Xeon, perf); at 256 tokens (DiT-S/2, XL/2) an eighth.
//
// Here each output element is one chain of fused multiply-adds over k = 0 .. K-1 in order, plus the bias
// after it, whatever M, the row's place in the batch or the thread count, so the whole batch goes in one
// call. The weight is packed per call into panels of NR columns, (K, NR), one panel per work item, and each
// panel then serves a chunk of rows.
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/error.h"
#include "base/thread_exit.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/gemm_f32.h"

#define NR 32            // panel width: two AVX-512 vectors
#define MR512 12         // rows per register block: 12 x 2 accumulators + 2 weight vectors + 1 broadcast

// panel (K, NR) from weight rows [n0, n0 + nn), zero beyond nn; in blocks of PACK_K values of k, so that the
// block being written (PACK_K x NR floats, 8 KB) stays in L1 while 32 weight rows are read into it.
#define PACK_K 64
static void pack_panel(float *panel, const float *weight, int K, int n0, int nn) {
    for (int k0 = 0; k0 < K; k0 += PACK_K) {
        const int k1 = K - k0 < PACK_K ? K : k0 + PACK_K;
        for (int j = 0; j < NR; j++) {
            const float *src = weight + (int64_t)(n0 + j) * K;
            if (j < nn)
                for (int k = k0; k < k1; k++) panel[(int64_t)k * NR + j] = src[k];
            else
                for (int k = k0; k < k1; k++) panel[(int64_t)k * NR + j] = 0.0f;
        }
    }
}

// gelu_tanh(v) = v / (1 + exp(-2u)), 2u = 2 sqrt(2/pi) (v + 0.044715 v^3), in exactly the operations of
// elementwise.c's gelu_tanh_forward (its fast_exp8 on 16 lanes: no fused multiply-adds, a division), so the
// fused epilogue gives the same bits as the product followed by that pass.
AVX512_TARGET static inline __m512 gelu_tanh_as_elementwise(__m512 v) {
    const __m512 cubic = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.044715f), v), v), v);
    __m512 x = _mm512_sub_ps(_mm512_setzero_ps(),
                             _mm512_mul_ps(_mm512_set1_ps(2.0f * 0.7978845608028654f), _mm512_add_ps(v, cubic)));
    x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), x);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), magic), magic);
    __m512 r = _mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(0.693359375f)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(-2.12194440e-4f)));
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(0.5f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    const __m512 e = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
    return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

// out rows [m0, m0 + mr) (mr <= MR512), columns [n0, n0 + nn) (one panel), then the epilogue (NULL: none). A
// block short of MR512 rows repeats its last row.
AVX512_TARGET static void block512(float *out, int ldo, const float *inp, int K, const float *panel, int m0, int mr,
                                   int n0, int nn, const float *bias, const gemm_f32_epilogue *ep) {
    __m512 acc[MR512][2];
    const float *row[MR512];
    for (int i = 0; i < MR512; i++) {
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        row[i] = inp + (int64_t)(i < mr ? i : mr - 1) * K;
    }
    for (int k = 0; k < K; k++) {
        const __m512 w0 = _mm512_loadu_ps(panel + (int64_t)k * NR), w1 = _mm512_loadu_ps(panel + (int64_t)k * NR + 16);
        for (int i = 0; i < MR512; i++) {
            const __m512 a = _mm512_set1_ps(row[i][k]);
            acc[i][0] = _mm512_fmadd_ps(a, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, w1, acc[i][1]);
        }
    }
    const __mmask16 k0 = nn >= 16 ? 0xffff : (__mmask16)((1u << nn) - 1u);
    const __mmask16 k1 = nn >= 32 ? 0xffff : nn > 16 ? (__mmask16)((1u << (nn - 16)) - 1u) : 0;
    if (bias) {
        const __m512 b0 = _mm512_maskz_loadu_ps(k0, bias + n0), b1 = _mm512_maskz_loadu_ps(k1, bias + n0 + 16);
        for (int i = 0; i < mr; i++) {
            acc[i][0] = _mm512_add_ps(acc[i][0], b0);
            acc[i][1] = _mm512_add_ps(acc[i][1], b1);
        }
    }
    if (ep && ep->gelu)
        for (int i = 0; i < mr; i++) {
            acc[i][0] = gelu_tanh_as_elementwise(acc[i][0]);
            acc[i][1] = gelu_tanh_as_elementwise(acc[i][1]);
        }
    for (int i = 0; i < mr; i++) {
        float *o = out + (int64_t)(m0 + i) * ldo + n0;
        if (ep && ep->gate) {   // o += gate * (sum + bias), a multiply then an add, as gated_residual_forward
            const float *g = ep->gate + (int64_t)((m0 + i) / ep->gate_rows) * ep->gate_stride + n0;
            const __m512 g0 = _mm512_maskz_loadu_ps(k0, g), g1 = _mm512_maskz_loadu_ps(k1, g + 16);
            acc[i][0] = _mm512_add_ps(_mm512_maskz_loadu_ps(k0, o), _mm512_mul_ps(g0, acc[i][0]));
            acc[i][1] = _mm512_add_ps(_mm512_maskz_loadu_ps(k1, o + 16), _mm512_mul_ps(g1, acc[i][1]));
        }
        _mm512_mask_storeu_ps(o, k0, acc[i][0]);
        _mm512_mask_storeu_ps(o + 16, k1, acc[i][1]);
    }
}

// The calling thread's panel buffers (one panel per worker), kept between calls and only grown, so that a
// sampler's steady state allocates nothing; freed when the thread ends (base/thread_exit.h).
typedef struct {
    float *data;
    size_t floats;
    thread_exit_hook on_exit;
} panel_buffers;

static _Thread_local panel_buffers buffers_of_thread;

static void free_panel_buffers(void *arg) {
    panel_buffers *b = arg;
    free(b->data);
    b->data = NULL, b->floats = 0;
}

static float *panel_buffers_get(size_t floats) {
    panel_buffers *b = &buffers_of_thread;
    if (b->floats < floats) {
        free(b->data);
        b->floats = 0;
        if (!(b->data = dit_malloc(floats * sizeof *b->data))) return NULL;
        b->floats = floats;
        b->on_exit.run = free_panel_buffers, b->on_exit.arg = b;
        thread_exit_register(&b->on_exit);
    }
    return b->data;
}

// Rows per work item: the whole of M, or chunks of it (a multiple of MR512) when there are too few panels to
// keep every thread busy. Work splitting changes no sum.
static int chunk_rows(int M, int panels, int threads) {
    const int want = 4 * threads;
    if (panels >= want || M <= 96) return M;
    int chunks = (want + panels - 1) / panels, rows = (M + chunks - 1) / chunks;
    rows = (rows + MR512 - 1) / MR512 * MR512;
    return rows < 96 ? 96 : rows;
}

dit_status gemm_f32_linear(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N,
                           const gemm_f32_epilogue *ep) {
    DIT_CHECK(M >= 0 && K > 0 && N > 0);
    DIT_CHECK(cpu_path_active() >= CPU_PATH_AVX512);
    if (M == 0) return DIT_OK;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    const int panels = (N + NR - 1) / NR, rows = chunk_rows(M, panels, threads);
    const int chunks = (M + rows - 1) / rows, items = panels * chunks;
    if (threads > items) threads = items;
    float *buffers = panel_buffers_get((size_t)threads * K * NR);
    if (!buffers) return DIT_ERR;
    #pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int item = 0; item < items; item++) {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *panel = buffers + (int64_t)t * K * NR;
        const int p = item / chunks, n0 = p * NR, nn = N - n0 < NR ? N - n0 : NR;
        const int m_begin = item % chunks * rows, m_end = m_begin + rows < M ? m_begin + rows : M;
        pack_panel(panel, weight, K, n0, nn);
        for (int m0 = m_begin; m0 < m_end; m0 += MR512) {
            const int mr = m_end - m0 < MR512 ? m_end - m0 : MR512;
            block512(out, N, inp + (int64_t)m0 * K, K, panel, m0, mr, n0, nn, bias, ep);
        }
    }
    return DIT_OK;
}
