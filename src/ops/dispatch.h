// The one place where the model's ops meet a back-end and a precision. Model code (models/) calls op_*;
// each op picks the kernel: cpu-fp32 (ops/cpu/*, the oracle), cpu-bf16 (AMX or AVX512-BF16 products with
// float32 accumulation, ops/cpu/gemm_bf16.c). A new back-end (CUDA) adds a branch here and files under ops/,
// never edits models/.
#ifndef DIT_OPS_DISPATCH_H
#define DIT_OPS_DISPATCH_H

#include <stdint.h>

#include "dit.h"
#include "ops/bf16.h"

typedef enum { OPS_FP32 = 0, OPS_BF16 = 1 } ops_precision;

// The precision AUTO resolves to on this machine (ops/precision.c): DIT_PRECISION (environment: fp32, bf16,
// auto) if set, else bf16 where the CPU has a bf16 matrix path, fp32 elsewhere. bf16 stays bf16 (callers
// check dit_compute_path for an error), except that an environment bf16 on a CPU without it means fp32.
dit_precision dit_precision_resolve(dit_precision p);

typedef struct {
    ops_precision precision;
    uint64_t weights_version;   // bumped whenever the float32 weights change; prepared copies follow it
    // The linear backwards write dweight instead of adding to it (dbias is still added to): a training step
    // whose weight gradients hold nothing yet need not zero them, and the products read nothing.
    int fresh_weight_grads;
    // Training's forward: the bf16 path packs each weight's transpose too (linear_layer.bf16_t), from the same
    // read of the weight, for the backward that follows.
    int pack_transposed;
} ops_context;

// A dense layer (PyTorch nn.Linear): views of the float32 master weights and the back-end's prepared copy.
typedef struct {
    const float *weight, *bias;   // (N, K), (N) or NULL
    int N, K;
    bf16_packed bf16;             // packed bf16 weight, valid when bf16_version == the context's version
    uint64_t bf16_version;
    bf16_packed bf16_t;           // packed bf16 W^T (the backward's dinp operand), valid when bf16_t_version is
    uint64_t bf16_t_version;
} linear_layer;

void linear_layer_init(linear_layer *L, const float *weight, const float *bias, int N, int K);
void linear_layer_free(linear_layer *L);

// What follows the product (fused in the bf16 kernels, separate float32 ops in the fp32 path, in the
// order the fp32 path has always run them, so fp32 results stay bit-identical).
typedef enum {
    LINEAR_PLAIN,            // out = inp @ W^T + b
    LINEAR_GELU,             // pre = inp @ W^T + b (if pre != NULL); out = gelu_tanh(inp @ W^T + b)
    LINEAR_GATED_RESIDUAL,   // out = residual + gate[row / gate_rows] * (inp @ W^T + b)   (adaLN-Zero;
                             // residual NULL: out += ...)
} linear_epilogue_kind;

typedef struct {
    linear_epilogue_kind kind;
    float *pre;              // LINEAR_GELU: keep the value before GELU here (training); may be NULL
    const float *gate;       // LINEAR_GATED_RESIDUAL: (M / gate_rows, gate_stride) rows
    int gate_stride, gate_rows;
    const float *residual;   // LINEAR_GATED_RESIDUAL: (M, N), the stream added to; NULL: out itself
    float *product;          // LINEAR_GATED_RESIDUAL: keep inp @ W^T (no bias) here (training; may be NULL)
    float *scratch;          // LINEAR_GATED_RESIDUAL in fp32 without product: (M, N) floats
    int stream;              // LINEAR_PLAIN, bf16: out is read by a later pass over more data than the caches
                             // hold (training's kept qkv): stored past the caches (gemm_epilogue.stream_out)
} linear_epilogue;

// The left operand of a product as the op before it left it: float32 rows (M, K), or on the bf16 path a bf16
// copy already in the layout the products read (a_layout_tiles(kp), zero in columns K..kp), so that the
// product does not convert it again. Model code only passes these along.
typedef struct {
    const float *f32;
    const uint16_t *b16;
    int kp;                  // b16's padded row length
} op_operand;

static inline op_operand op_floats(const float *x) { return (op_operand){.f32 = x}; }

// On the bf16 path, a GELU linear backward (fc2's) makes its d input directly as the next linear backward's
// bf16 operands (on = 1, the default; its float32 d input then holds only the edge blocks), or writes it in
// float32 and leaves that backward to convert it (on = 0); the same gradients either way. For tests and
// benchmarks.
void ops_fuse_backward_dout(int on);

// 1 when the fp32 linear layers run our own product (gemm_f32.c, AVX-512 paths), 0 when OpenBLAS sgemm (AVX2).
int ops_fp32_linear_is_ours(void);

// out (M, N) = epilogue(inp (M, K) @ W^T + b). group_rows: the float32 path runs one product per group of
// rows (per sample: OpenBLAS picks summation orders by shape, and the forward must be batch-invariant);
// 0 = one product. The bf16 kernels are row-independent by construction.
// The ops below fail (DIT_ERR, message set) only when the bf16 path cannot allocate its packed copies.
dit_status op_linear(const ops_context *ctx, linear_layer *L, float *out, const float *inp, int M, int group_rows,
                     const linear_epilogue *ep);

// op_linear from an operand (op_floats(inp) is op_linear itself).
dit_status op_linear_from(const ops_context *ctx, linear_layer *L, float *out, const op_operand *inp, int M,
                          int group_rows, const linear_epilogue *ep);

// The MLP of a block: out = epilogue(gelu_tanh(inp (M, K) @ W1^T + b1) @ W2^T + b2), fc1 (N1, K), fc2 (N2, N1).
// hidden (M, N1): the fp32 path's GELU output; the bf16 path keeps it in bf16 in a workspace of its own,
// written by fc1's epilogue where fc2 reads it (no float32 pass in between), and leaves hidden untouched.
// pre (M, N1) or NULL: fc1's output before GELU (training). ep: fc2's epilogue as in op_linear. Results are
// those of op_linear(fc1, LINEAR_GELU) followed by op_linear(fc2), bit for bit, in both precisions.
dit_status op_mlp(const ops_context *ctx, linear_layer *fc1, linear_layer *fc2, float *out, float *hidden,
                  const op_operand *inp, int M, int group_rows, float *pre, const linear_epilogue *ep);

// Backward of out = inp @ W^T + b: dinp = dout @ W (overwritten; NULL skips it), dweight += dout^T @ inp (= with
// ctx->fresh_weight_grads),
// dbias += column sums of dout (NULL skips it). In bf16 the products take bf16 inputs (float32 sums), and dbias is
// summed while dout is converted for the weight gradient (float32, in 16-row chunks: not the fp32 path's bits).
dit_status op_linear_backward(const ops_context *ctx, linear_layer *L, float *dinp, float *dweight, float *dbias,
                              const float *dout, const float *inp, int M);
// The same for a layer whose input is gelu_tanh(pre) (fc2 of an MLP), carried on through the GELU: dpre =
// (dout @ W) * gelu_tanh'(pre), dweight += dout^T @ gelu_tanh(pre), dbias += column sums of dout. The fp32 path
// writes gelu_tanh(pre) to gelu_out (M, K) on the way, exactly as gelu_tanh_forward, op_linear_backward and
// gelu_tanh_backward in turn; the bf16 path packs the GELU output straight from pre and applies the slope in
// the product's epilogue, leaving gelu_out untouched. With the fused dout (ops_fuse_backward_dout, on unless
// turned off) the bf16 path makes dpre as the two bf16 operands of the next linear backward on this thread,
// whose dout must be dpre, and writes only dpre's edge blocks (rows and columns past the last multiple of 32).
dit_status op_linear_backward_gelu(const ops_context *ctx, linear_layer *L, float *dpre, float *dweight, float *dbias,
                                   const float *dout, const float *pre, float *gelu_out, int M);

// The attention's input: qkv (B T, 3D) = inp @ W^T + b (L (3D, D)), written into the qkv buffer (B T x 3D
// floats) in the form the attention ops below read it (ops_qkv_form): float32, or on the bf16 path its values
// rounded to bf16 (the only form in which the attention's products read them: the same results, bit for bit),
// in the first half of the buffer, head by head (qkv_rows.head_major) where T and D are multiples of 32 and
// heads at least 32 wide, else row-major (3D a row) where 3D is. keep: training keeps it for the backward (stored past the
// caches).
dit_status op_qkv(const ops_context *ctx, linear_layer *L, float *qkv, const op_operand *inp, int B, int T, int H,
                  int group_rows, int keep);
typedef enum { QKV_F32, QKV_BF16_ROWS, QKV_BF16_HEADS } qkv_form;
qkv_form ops_qkv_form(const ops_context *ctx, int T, int D, int H);
// The bf16 forms turned off (0: float32 always) or on (1, the default): for tests and benchmarks.
void ops_qkv_bf16(int on);
// values (B T, 3D floats) stored into qkv in op_qkv's form (tests and benchmarks).
void ops_qkv_store(const ops_context *ctx, float *qkv, const float *values, int B, int T, int D, int H);

// The backward of the attention's output projection (op_linear_backward of L, (D, D), input attn (B T, D)),
// with d attn written in the form op_attention_backward reads its dout: float32, or on the bf16 path where qkv
// is head by head (QKV_BF16_HEADS), in bf16 head by head in the first half of the buffer (the attention
// backward reads it only rounded to bf16: the same results, bit for bit).
dit_status op_attention_out_backward(const ops_context *ctx, linear_layer *L, float *d_attn, float *dweight,
                                     float *dbias, const float *dout, const float *attn, int B, int T, int H);
// d_attn (B T, D floats) stored in op_attention_out_backward's form (tests).
void ops_attention_dout_store(const ops_context *ctx, float *d_attn, const float *values, int B, int T, int D, int H);

// Multi-head self-attention (ops.h attention_forward) of qkv as op_qkv left it; scratch as
// attention_scratch_floats (fp32 path only). stats (B H T x 2 floats, training) or NULL: on the bf16 path the
// softmax rows' statistics, which op_attention_backward then reads (the fp32 path leaves them untouched).
dit_status op_attention(const ops_context *ctx, float *out, const float *qkv, float *stats, float *scratch, int B,
                        int T, int D, int H);
// op_attention for what only a product reads (inference): *out_op is out (written) on the fp32 path, or on
// the bf16 path the bf16 copy a product would make of it, in a workspace valid until the next call in this
// thread, with out untouched (where the head size is a multiple of 8; else out, written).
dit_status op_attention_operand(const ops_context *ctx, op_operand *out_op, float *out, const float *qkv,
                                float *scratch, int B, int T, int D, int H);
// The backward (dqkv overwritten), of qkv as op_qkv left it and dout as op_attention_out_backward did. With the
// fused dout (ops_fuse_backward_dout) on the bf16 path, where
// attention_backward_fills_both, dqkv is made as the next linear backward's bf16 operands instead (that backward,
// on this thread, must be the one whose dout is dqkv) and not written in float32.
dit_status op_attention_backward(const ops_context *ctx, float *dqkv, const float *dout, const float *qkv,
                                 const float *stats, float *scratch, int B, int T, int D, int H);

// LayerNorm + modulate (ops.h layernorm_modulate_forward). On the bf16 path its statistics are float32 sums
// across vector lanes (ops/cpu/norm_avx512.c); fp32 is the exact double-sum version.
void op_layernorm_modulate(const ops_context *ctx, float *y, float *mean, float *rstd, const float *x,
                           const float *shift, const float *scale, int row_stride, int B, int T, int D);
// LayerNorm + modulate for what only products read: *y_op is y (fp32 path, written), or on the bf16 path the
// bf16 copy of y in a workspace of the dispatch's (y untouched), valid until the next call in this thread.
// The bf16 values are those a product would round y to, bit for bit. DIT_ERR: that workspace's allocation.
dit_status op_layernorm_modulate_operand(const ops_context *ctx, op_operand *y_op, float *y, float *mean, float *rstd,
                                         const float *x, const float *shift, const float *scale, int row_stride, int B,
                                         int T, int D);
// The rows y = modulate(LN(x)) of op_layernorm_modulate, recomputed from the forward's statistics (mean, rstd
// as it saved them): x (B, T, D), shift and scale rows of a (B, row_stride) matrix.
typedef struct {
    const float *x, *mean, *rstd, *shift, *scale;
    int row_stride, B, T, D;
} modulated_rows;
// op_linear_backward for a layer whose input is such rows (qkv and fc1 after their adaLN LayerNorm, and the
// adaLN final layer). fp32: the rows are recomputed into h (M = B T rows of D) by op_layernorm_modulate, statistics and
// all, then op_linear_backward. bf16: they go from x straight into the weight gradient's packed operand (the
// same bf16 values), and h is not touched.
dit_status op_linear_backward_modulated(const ops_context *ctx, linear_layer *L, float *dinp, float *dweight,
                                        float *dbias, const float *dout, const modulated_rows *in, float *h);
// bf16_pack of the rows as the weight gradient's B[d, row] (AVX-512).
dit_status layernorm_modulate_pack_avx512(bf16_packed *dst, const modulated_rows *in);
// Its backward (ops.h layernorm_modulate_backward: dx accumulated, dshift and dscale overwritten); on the bf16
// path with float32 sums across vector lanes, as the forward.
void op_layernorm_modulate_backward(const ops_context *ctx, float *dx, float *dshift, float *dscale, const float *dy,
                                    const float *x, const float *mean, const float *rstd, const float *scale,
                                    int row_stride, int B, int T, int D);
void layernorm_modulate_backward_avx512(float *dx, float *dshift, float *dscale, const float *dy, const float *x,
                                        const float *mean, const float *rstd, const float *scale, int row_stride,
                                        int B, int T, int D);
// y16 != NULL: write y as bf16 into y16 (a_layout_tiles(kp), zeros in columns D..kp) instead of y.
void layernorm_modulate_forward_avx512(float *y, uint16_t *y16, int kp, float *mean, float *rstd, const float *x,
                                       const float *shift, const float *scale, int row_stride, int B, int T, int D);

// Multi-head cross-attention from T tokens to S context tokens (ops.h cross_attention_forward). One float32
// kernel in both precisions: with S = 2 keys its products are 2 multiply-adds per query element, nothing for
// a matrix unit; the layers around it (queries, keys-values, projection) take the precision through op_linear.
void op_cross_attention(const ops_context *ctx, float *out, const float *q, const float *kv, int B, int T, int S,
                        int D, int H);
void op_cross_attention_backward(const ops_context *ctx, float *dq, float *dkv, const float *dout, const float *q,
                                 const float *kv, int B, int T, int S, int D, int H);

// bf16 attention kernels (ops/cpu/attention_bf16.c): per (batch, head) one thread, the two products on the
// bf16 path, softmax in float32. Only call when the CPU has a bf16 path.
// out16 != NULL: the output goes to out16 as a bf16 operand (a_layout_tiles(kp), zeros in columns D..kp)
// instead of out; needs a head size that is a multiple of 8.
// qkv: the (B T, 3D) rows [q | k | v], in float32 (f32) or already rounded to bf16 (b16, the same row length:
// what op_qkv leaves on the bf16 path); the products read the same bf16 values either way, so the results are
// the same bits.
// With head_major, b16 holds them head by head instead: the T x hd rows of part p (q, k, v) of head h of sample
// b at ((b * 3 + p) * H + h) * T * hd, rows hd apart (a head's rows contiguous).
typedef struct {
    const float *f32;
    const uint16_t *b16;
    int head_major;
} qkv_rows;
// stats (B H T x 2 floats) or NULL: each softmax row's max and 1 / sum, kept for attention_backward_bf16.
dit_status attention_forward_bf16(float *out, uint16_t *out16, int kp, qkv_rows qkv, float *stats, int B, int T, int D,
                                  int H);
// With both (bf16_both_reserve'd for B T x 3D), dqkv is not written: its values go straight into both, as
// bf16_convert_both(dqkv) would make them (the qkv linear backward's operands and column sums); only when
// attention_backward_fills_both (every 16 x 16 block of dqkv lies in one head, and no padding).
// dout: the gradient of the output, (B T, D) row-major in float32 (f32), or in bf16 head by head (b16: head h
// of sample b at (b H + h) T hd, rows hd apart), as op_attention_out_backward makes it; only read rounded to bf16.
typedef struct {
    const float *f32;
    const uint16_t *b16;
} attn_dout;
// stats: the forward's (the same qkv), from which the backward recomputes P in one pass; NULL: from scratch.
dit_status attention_backward_bf16(float *dqkv, bf16_both *both, attn_dout dout, qkv_rows qkv, const float *stats,
                                   int B, int T, int D, int H);
int attention_backward_fills_both(int B, int T, int D, int H);

#endif
