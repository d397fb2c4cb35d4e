// The bf16 matrix path: products with bf16 inputs and float32 accumulation, on AMX tiles or AVX512-BF16
// dot products (cpu_features.h picks which). Inputs are rounded to nearest even; sums, epilogues and
// everything around the products stay float32. Only call these when cpu_path_active() >= CPU_PATH_AVX512_BF16
// (ops_precision.c does the checking for the model code).
#ifndef DIT_OPS_BF16_H
#define DIT_OPS_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"

// The right-hand operand of a product, packed once into the layout both kernels read: panels of 32 columns
// of B (N, K), each panel a run of (32 K) x (32 N) blocks of two 16-column halves stored as K pairs
// [16 pairs][16 columns][2] (the AMX tile / vdpbf16ps operand). N and K are zero-padded to multiples of 32.
typedef struct {
    int N, K;           // logical size of B (N, K): out = A (M, K) @ B^T
    int Np, Kp;         // padded sizes
    uint16_t *data;     // Np * Kp bf16
    size_t capacity;    // allocated bf16 elements (packing grows it, never shrinks)
} bf16_packed;

// Pack B (N, K) read as src[n * stride_n + k * stride_k] (an nn.Linear weight (N, K): stride_n = K,
// stride_k = 1; a weight used transposed: stride_n = 1, stride_k = N). Grows dst->data as needed; out of
// memory leaves dst empty and returns DIT_ERR.
dit_status bf16_pack(bf16_packed *dst, const float *src, int N, int K, int64_t stride_n, int64_t stride_k);
// bf16_pack(w, W, N, K, K, 1) and bf16_pack(wt, W, K, N, 1, K) (a weight and its transpose: a linear layer's
// forward and backward operands) from one read of W; the same bits as the two calls.
dit_status bf16_pack_both(bf16_packed *w, bf16_packed *wt, const float *W, int N, int K);
// bf16_pack of a source already in bf16 (the same bits as bf16_pack of its values widened to float32), with
// stride_k == 1 or stride_n == 1; serial (for operands one thread packs, attention's heads).
dit_status bf16_pack16(bf16_packed *dst, const uint16_t *src, int N, int K, int64_t stride_n, int64_t stride_k);
// bf16_pack of gelu_tanh(src) for a source contiguous along N (stride_n = 1): B[n, k] = gelu_tanh(src[k *
// stride_k + n]), as the backward of fc2 reads the GELU output it recomputes from fc1's (training).
dit_status bf16_pack_gelu(bf16_packed *dst, const float *src, int N, int K, int64_t stride_k);
void bf16_packed_free(bf16_packed *p);
// dst sized for B (N, K): N, K, Np, Kp set, data grown if needed (its contents are the caller's to write).
dit_status bf16_packed_reserve(bf16_packed *dst, int N, int K);

// What happens to each product value v = alpha * (A @ B^T)[m, n] on its way to out[m, n]:
//   product[m, n] = v                    (product != NULL; row stride ldo: training keeps it)
//   v += bias[n]                         (bias != NULL)
//   pre_gelu[m, n] = v; v = gelu_tanh(v) (gelu; pre_gelu may be NULL; row stride ldo)
//   v *= gelu_tanh'(gelu_grad_of[m, n]) (gelu_grad_of != NULL; row stride ldo: the backward through a GELU;
//                                     not with transpose_out or out16)
//   out = gate[(m / gate_rows), n] * v + r     (gate != NULL: the adaLN-Zero gated residual; r = residual[m, n]
//                                        (row stride ldo) when residual != NULL, else out's own value)
//   out = out + v                        (accumulate)
//   out = v                              (otherwise)
// or, with out16, v rounded to bf16 goes to out16 instead of out (out is not touched and may be NULL): the
// next product's A, written where that product reads it, so it is not converted a second time.
// product and pre_gelu are what the training forward keeps for its backward: where their rows start cache
// lines they are written with stores that bypass the caches; with stream_out, so is out (plain, bias or
// accumulate epilogues done by the kernel): its whole blocks go through the L1 block first; or out16, where
// a whole block's rows are runs that start cache lines.
typedef struct a_layout a_layout;
typedef struct bf16_both bf16_both;
typedef struct {
    float alpha;             // 0 is read as 1
    const float *bias;
    int gelu;
    float *pre_gelu;
    float *product;          // not with transpose_out or out16
    // a_row_sums[m] += sum over k of A[m, k] (float32 A as read, before rounding; gemm_bf16 and
    // gemm_bf16_serial only): the bias gradient of a weight-gradient product dout^T @ inp. The order of the sum
    // is fixed (16-column chunks, then the chunks in order), whatever the threads.
    float *a_row_sums;
    const float *gelu_grad_of;   // the GELU's inputs: out is d(input) of a GELU whose d(output) is the product
    const float *gate;       // rows of stride gate_stride, one row per gate_rows output rows
    int gate_stride, gate_rows;
    const float *residual;   // with gate: the stream the gated product is added to (NULL: out, updated in place)
    int accumulate;
    int transpose_out;       // write out[n * ldo + m] (bias and accumulate only): a conv's (C, H*W) output
    // line > 0: rows come in lines of `line` rows of which only the first line_keep are output, numbered
    // consecutively (row m goes to row, or with transpose_out column, m / line * line_keep + m % line): an
    // implicit-GEMM conv whose rows walk the padded input, two junk positions at the end of each line. Not with
    // gate or out16.
    int line, line_keep;
    // bf16 output (with bias/gelu only; not with gate, accumulate or transpose_out): element (m, n) goes to
    // out16 at a_offset(out16_layout, out16_row0 + m, out16_col0 + n). out16_cols = 0: the whole operand,
    // columns past N up to the last panel's end written as zeros (its K padding); else only columns
    // n < out16_cols are written (a slice of a wider operand: one attention head), out16_col0 a multiple of 8.
    uint16_t *out16;
    const a_layout *out16_layout;
    int out16_row0, out16_col0, out16_cols;
    // head_major_hd > 0: out16 instead in head-major order (op_qkv): element (m, n) at ((m / T * groups + n / hd)
    // * T + m % T) * hd + n % hd, T = head_major_T, hd = head_major_hd, groups = head_major_groups = N / hd; T and
    // N multiples of 32 (every block whole, its rows in one sample) and hd >= 32 (a block's columns in one head's
    // part, or in two: XL's heads of 72); out16_layout, row0, col0 unused.
    int head_major_T, head_major_hd, head_major_groups;
    // With gelu_grad_of only (training: fc2's d input through the GELU is fc1's dout): each whole 32 x 32 block
    // of out goes into `both` (bf16_both_reserve'd for this M x N) instead, as bf16_convert_both would make it,
    // and is not written to out (a matrix the size of the MLP's hidden layer that nothing else reads: its
    // stores to lines no cache holds cost 3% of a DiT-S/2 training step); out gets the edge blocks only, from
    // which bf16_both_finish then makes the rest.
    bf16_both *both;
    // With gelu_grad_of, M and N multiples of 32 (whole blocks only): gelu_tanh(gelu_grad_of[m, n]) also goes into
    // gelu_act (bf16_packed_reserve'd for N rows, K = M), packed as B[n, m] (fc2's weight-gradient operand), as
    // bf16_pack_gelu makes it, while the block's inputs are in L1.
    bf16_packed *gelu_act;
    int stream_out;
} gemm_epilogue;

// out (M, N), row stride ldo = epilogue(A @ B^T); A (M, K) float32 read as A[m * stride_m + k * stride_k]
// and rounded to bf16. Each output row depends only on its own row of A (fixed summation order), so results
// do not depend on M, the batch, or the thread count. ep may be NULL (plain store).
// gemm_bf16 splits the work over the OpenMP threads; gemm_bf16_serial runs in the calling thread (for use
// inside a parallel region). DIT_ERR only when the bf16 copy of A or the scratch for partial sums cannot be
// allocated.
dit_status gemm_bf16(float *out, int64_t ldo, const float *A, int64_t stride_m, int64_t stride_k, const bf16_packed *B,
               int M, const gemm_epilogue *ep);
dit_status gemm_bf16_serial(float *out, int64_t ldo, const float *A, int64_t stride_m, int64_t stride_k,
                            const bf16_packed *B, int M, const gemm_epilogue *ep);

// src (M, N) float32 rounded to bf16 once into the two left operands of a linear layer's backward, in
// a_layout_tiles: *rows16 as dout for dinp = dout @ W (M rows, K = N, padded to 32) and *cols16 as dout^T for
// dweight += dout^T @ inp (N rows, K = M, padded to 32), zeros in the K padding of both; col_sums (N) += the
// column sums of src (the bias gradient; NULL skips it), in gemm_epilogue.a_row_sums's order. The buffers are
// the calling thread's, valid until its next call. Splits the work over the OpenMP threads.
dit_status bf16_convert_both(const float *src, int M, int N, const uint16_t **rows16, const uint16_t **cols16,
                             float *col_sums);

// src (M, N) float32, rows `stride` apart, rounded to bf16 in the calling thread into rows16 (at_rows: rows
// [0, Mp), K = N padded to Np) and/or cols16 (at_cols: rows [0, Np), K = M padded to Mp); either may be NULL.
// Zeros past M and N; Mp and Np multiples of 16.
void bf16_convert_serial(const float *src, int64_t stride, int M, int N, int Mp, int Np, uint16_t *rows16,
                         const a_layout *at_rows, uint16_t *cols16, const a_layout *at_cols);

// The same two operands and the column sums made while the matrix is produced (gemm_epilogue.both): a linear
// backward's d input that is the next backward's dout, so that it is not read back and converted.
struct bf16_both {
    int M, N, Mp, Np;        // the matrix, and both padded to 32
    uint16_t *rows16;        // a_layout_tiles(Np), Mp rows
    uint16_t *cols16;        // a_layout_tiles(Mp), Np rows
    float *chunk_sums;       // (Mp / 16, Np): column sums of each 16-row chunk, pairwise
    size_t rows_capacity, sums_capacity;   // elements held; only grow
};
// Room for an M x N matrix (bf16_portable.c, any CPU; DIT_ERR when out of memory). bf16_both_free on any CPU.
dit_status bf16_both_reserve(bf16_both *b, int M, int N);
void bf16_both_free(bf16_both *b);
// After the product whose epilogue filled b's whole blocks from src (M x N floats, row stride N): the rest (the
// last rows when M % 32, the last columns when N % 32, the zero padding). Then b holds exactly what
// bf16_convert_both(src) makes, bit for bit. Splits the work over the OpenMP threads.
void bf16_both_finish(bf16_both *b, const float *src);
// col_sums (N) += b's column sums, in bf16_convert_both's order.
void bf16_both_add_sums(const bf16_both *b, float *col_sums);

// Where a bf16 copy of A keeps element (r, k): at r/32 * block + (r/16 % 2) * half + r%16 * row + k/32 * kstep
// + k%32 elements. Rows: row = Kp, kstep = 32, half = 16 Kp, block = 32 Kp. Tiles (what gemm_bf16 makes and
// conv_bf16.c builds): each 16 x 32 tile of A is 1 KB in one piece, and a 32-row block's tiles follow each
// other along K (row = 32, half = 512, kstep = 1024, block = Kp / 32 * 1024), so the kernels read A as one
// stream. Runs of 16 elements along K starting at a multiple of 16 are contiguous in both.
// Indirect (koff != NULL; read by the kernels only, never written through a_offset): K step s of every row
// starts koff[s] elements past the row's start instead of s * kstep, so the steps of a row need not follow each
// other. A 3x3 convolution reads its input this way in place (conv_bf16.c): one K step is 32 channels of one
// tap, and the taps of an output position lie at fixed offsets in the channels-last input.
struct a_layout {
    int64_t block, half, row, kstep;
    const int64_t *koff;
};

static inline a_layout a_layout_rows(int Kp) {
    return (a_layout){.block = 32 * (int64_t)Kp, .half = 16 * (int64_t)Kp, .row = Kp, .kstep = 32};
}

static inline a_layout a_layout_tiles(int Kp) {
    return (a_layout){.block = (int64_t)Kp / 32 * 1024, .half = 512, .row = 32, .kstep = 1024};
}

static inline int64_t a_offset(const a_layout *at, int r, int k) {
    return (r >> 5) * at->block + ((r >> 4) & 1) * at->half + (r & 15) * at->row + (k >> 5) * at->kstep + (k & 31);
}

// The same with A already in bf16, laid out as `at` says: Kp = B->Kp elements a row (zero beyond K), at least
// round_up(M, 32) rows readable (rows past M may hold anything: their results are dropped).
// DIT_ERR when a thread's scratch for partial sums cannot be allocated.
dit_status gemm_bf16_a16(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at, const bf16_packed *B,
                         int M, const gemm_epilogue *ep);
// gemm_bf16_a16 in the calling thread (for use inside a parallel region).
dit_status gemm_bf16_a16_serial(float *out, int64_t ldo, const uint16_t *A16, const a_layout *at,
                                const bf16_packed *B, int M, const gemm_epilogue *ep);
// gemm_bf16 keeps its copy of A in rows instead of tiles: for benchmarks only (bench_gemm's "-rows" figures).
void gemm_bf16_use_row_layout(int on);
// Tests only: every thread of a bf16 GEMM works through the other threads' units (from the back) before its own,
// so that units run on threads other than their queue's owner (results must not change).
void gemm_bf16_steal_first(int on);

// ---- the VAE's 3x3 convolutions as an implicit GEMM (ops/cpu/conv_bf16.c) ----
// Pack a conv weight (Cout, Cin, 3, 3) as B (Cout, 9 Cin) in (ky, kx, ci) order.
dit_status conv3x3_pack_bf16(bf16_packed *dst, const float *w, int Cout, int Cin);
// out (Cout, H, W) = conv3x3(x, stride 1, pad 1) + bias (+ residual, which may be NULL, must not overlap out),
// one sample; x is (Cin, H, W), or (Cin, H/2, W/2) repeated 2x2 with upsample (H, W even).
dit_status conv3x3_bf16(float *out, const float *x, const bf16_packed *weights, const float *bias,
                        const float *residual, int upsample, int Cin, int H, int W, int Cout);
// The same from a channel-major input (Cin, H, W) into channels-last rows out (H W, Cout), + bias: the autoencoder's
// first conv, whose output the channels-last path takes as it is.
dit_status conv3x3_bf16_rows(float *out, const float *x, const bf16_packed *weights, const float *bias, int Cin, int H,
                             int W, int Cout);

// The channels-last form (the autoencoder's bf16 path; ops/cpu/channels_last.c and conv_bf16.c). Activations
// are (T = H W, C) float32 rows. A conv reads a zero-padded bf16 grid of its input: (H + 2) x (W + 2)
// positions of C values, then a zero tail the direct form reads past the grid; conv3x3_padded_elems(C, H, W)
// elements in all.
int64_t conv3x3_padded_elems(int C, int H, int W);
// padded = the grid of y, y[t, c] = silu?(scale[c] x[t, c] + shift[c]) (scale NULL: x itself), rounded to bf16;
// x (H W, C), or (H/2 W/2, C) repeated 2 x 2 with upsample (H, W even).
void conv3x3_pad_cl_bf16(uint16_t *padded, const float *x, int C, int H, int W, int upsample, const float *scale,
                         const float *shift, int silu);
// The same grid of float32 values (not rounded), conv3x3_padded_elems(C, H, W) floats: what the Winograd form
// transforms before rounding.
void conv3x3_pad_cl_f32(float *padded, const float *x, int C, int H, int W, int upsample, const float *scale,
                        const float *shift, int silu);
// Downsample2D (3x3, stride 2, zero padding only right and bottom, H and W even): x (H W, C) rounded to bf16
// into four parity planes, plane (a, b) holding input positions (2 i + a, 2 j + b) in OH + 1 lines of OW + 1
// positions (OH = H/2, OW = W/2; zeros past the input), planes (0,0), (0,1), (1,0), (1,1) one after another
// (fits in conv3x3_padded_elems(C, H, W)); and the conv over them, out (OH OW, Cout) rows + bias.
void conv3x3_pad_cl_bf16_down(uint16_t *grid, const float *x, int C, int H, int W);
dit_status conv3x3_bf16_down(float *out, const uint16_t *grid, const bf16_packed *weights, const float *bias, int Cin,
                             int H, int W);
// GroupNorm of channels-last x (T, C) as a per-channel affine map, norm(x)[t, c] = scale[c] x[t, c] + shift[c]:
// statistics per group over T x C/G values in one pass, float64 sums of float32 runs of 32 rows (which do not
// depend on the thread count) of x - x[0, c] and its square; biased variance. DIT_ERR when out of memory.
dit_status groupnorm_cl_affine(float *scale, float *shift, const float *x, int T, int C, int G, const float *gamma,
                               const float *beta, float eps);
// out = conv3x3(the grid padded) + bias (+ out, with accumulate): channels-last (H W, Cout) rows, or (Cout, H W)
// with transpose_out. Cin a multiple of 32; weights from conv3x3_pack_bf16.
dit_status conv3x3_bf16_padded(float *out, const uint16_t *padded, const bf16_packed *weights, const float *bias,
                               int accumulate, int transpose_out, int Cin, int H, int W);

// The stride-1 conv by Winograd's F(2x2, 3x3) (ops/cpu/conv_winograd.c): 2.25x fewer products than the direct
// form; its operands are rounded to bf16 after the transforms. For Cin and Cout multiples of 32 and H, W even
// (conv3x3_winograd_fits). Weights: the sixteen transformed filters packed as one B of 16 Cout rows. out (H W,
// Cout) rows = conv3x3(the float32 grid padded, from conv3x3_pad_cl_f32) + bias (may be NULL) (+ out with
// accumulate).
int conv3x3_winograd_fits(int Cin, int Cout, int H, int W);
dit_status conv3x3_winograd_pack_bf16(bf16_packed *dst, const float *w, int Cout, int Cin);
// upsampled: the grid was built with upsample (then 7 of the 16 products are zero and skipped).
dit_status conv3x3_winograd_bf16(float *out, const float *padded, const bf16_packed *U, const float *bias,
                                 int accumulate, int upsampled, int Cin, int H, int W);
// Whether the autoencoder uses it (models/vae.c): DIT_WINOGRAD=0|1 in the environment (read on first use) or
// conv3x3_winograd_enable(0|1) decide; otherwise (or after conv3x3_winograd_enable(-1)) it is on where the
// bf16 path is AVX512-BF16 and off on AMX tiles, where the direct form is as fast and more accurate.
void conv3x3_winograd_enable(int on);
int conv3x3_winograd_enabled(void);
// Tiles per band (rounded up to 32; 0: chosen from Cout). For tests and benchmarks: results do not change.
void conv3x3_winograd_band(int tiles);

// conv3x3_bf16 reads a Cin % 32 == 0 input in place (on = 1, the default), or builds rows of A band by band as
// for other Cin (on = 0); both give the same bits. For tests and benchmarks.
void conv3x3_bf16_allow_direct(int on);

// Round float32 to bf16 and back (nearest even), as the kernels see their inputs. Like bf16_packed_free,
// bf16_packed_reserve and conv3x3_padded_elems, safe on any CPU (ops/cpu/bf16_portable.c).
float bf16_round(float x);

// Kernel internals shared by gemm_bf16.c and gemm_amx.c.
// Vector work the AMX kernel does a row at a time between its K steps, while the tile unit multiplies: the
// epilogue of the block before (gemm_bf16.c). run(job, r) for r = next .. rows - 1, each once, in order.
typedef struct row_job row_job;
struct row_job {
    void (*run)(row_job *job, int r);
    int rows, next;
};
// How the kernel loads its operand tiles: all with tileloadd, or B's (or both operands') with tileloaddt1, the
// hint that their lines will not be used again soon (gemm_bf16.c's amx_kernel_block chooses). The same bits.
typedef enum { AMX_LOADS_CACHED, AMX_LOADS_STREAM_B, AMX_LOADS_STREAM_BOTH } amx_loads;
// dst (32 x 32 floats, row stride ldd) = start + 32 rows of A (bf16, laid out as `at` says, from the block's
// first K step) x `ksteps` 32-deep blocks of one packed panel, where start is src (row stride lds;
// accumulate), else the 32 values `init` in every row (a bias), else 0. src may be dst. With job (may be
// NULL), the job's rows left are all done before it returns; they must not touch dst or src. Tiles loaded as
// `loads` says.
void amx_kernel_32x32(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A, const a_layout *at,
                      const uint16_t *panel, int ksteps, const float *init, int accumulate, row_job *job,
                      amx_loads loads);
// The same for the first 16 rows of the block only (dst's rows 16..31 untouched), the same bits for those rows.
void amx_kernel_16x32(const float *src, int64_t lds, float *dst, int64_t ldd, const uint16_t *A, const a_layout *at,
                      const uint16_t *panel, int ksteps, const float *init, int accumulate, row_job *job,
                      amx_loads loads);
void amx_configure(void);
void amx_release(void);

#endif
