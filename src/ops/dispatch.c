// Op dispatch by precision (see dispatch.h). The fp32 branches are the kernel sequences the model ran before
// dispatch existed (their products by our AVX-512 kernel where the CPU has it); the bf16 branches fuse the
// epilogue into the product.
#include "ops/dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "base/bf16_bits.h"
#include "base/error.h"
#include "base/thread_exit.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/ops.h"

void linear_layer_init(linear_layer *L, const float *weight, const float *bias, int N, int K) {
    linear_layer_free(L);
    L->weight = weight, L->bias = bias, L->N = N, L->K = K;
}

void linear_layer_free(linear_layer *L) {
    bf16_packed_free(&L->bf16);
    bf16_packed_free(&L->bf16_t);
    memset(L, 0, sizeof *L);
}

static const bf16_packed *prepared_bf16(const ops_context *ctx, linear_layer *L) {
    if (L->bf16_version != ctx->weights_version || !L->bf16.data) {
        if (ctx->pack_transposed) {
            if (bf16_pack_both(&L->bf16, &L->bf16_t, L->weight, L->N, L->K) != DIT_OK) return NULL;
            L->bf16_t_version = ctx->weights_version;
        } else if (bf16_pack(&L->bf16, L->weight, L->N, L->K, L->K, 1) != DIT_OK) {
            return NULL;
        }
        L->bf16_version = ctx->weights_version;
    }
    return &L->bf16;
}

// On AVX-512 the fp32 products are our own (ops/cpu/gemm_f32.c), which take the whole batch at once: they sum
// every output row in one order whatever M, and do GELU and the gated residual in their epilogue at inference.
// sgemm does not promise that (it picks kernels by shape), so with AVX2 only it runs once per group_rows rows
// (one image), always at the same shape.
int ops_fp32_linear_is_ours(void) { return cpu_path_active() >= CPU_PATH_AVX512; }

static dit_status linear_fp32(linear_layer *L, float *out, const float *inp, const float *bias, int M,
                              int group_rows) {
    if (ops_fp32_linear_is_ours()) return gemm_f32_linear(out, inp, L->weight, bias, M, L->K, L->N, NULL);
    const int rows = group_rows > 0 ? group_rows : M;
    for (int r = 0; r < M; r += rows)
        linear_forward(out + (int64_t)r * L->N, inp + (int64_t)r * L->K, L->weight, bias, rows, L->K, L->N);
    return DIT_OK;
}

static dit_status product_bf16(float *out, const op_operand *A, const bf16_packed *W, int M, const gemm_epilogue *g) {
    if (!A->b16) return gemm_bf16(out, W->N, A->f32, W->K, 1, W, M, g);
    if (A->kp != W->Kp) return dit_set_error("%s:%d: a bf16 operand of row length %d for a product of K %d", __FILE__,
                                             __LINE__, A->kp, W->Kp);
    const a_layout layout = a_layout_tiles(A->kp);
    return gemm_bf16_a16(out, W->N, A->b16, &layout, W, M, g);
}

// op_linear's bf16 branch, for either kind of left operand.
static dit_status linear_bf16(const ops_context *ctx, linear_layer *L, float *out, const op_operand *A, int M,
                              const linear_epilogue *ep) {
    const bf16_packed *W = prepared_bf16(ctx, L);
    if (!W) return DIT_ERR;
    gemm_epilogue g = {.bias = L->bias};
    if (ep->kind == LINEAR_GELU) {
        g.gelu = 1;
        g.pre_gelu = ep->pre;
    } else if (ep->kind == LINEAR_GATED_RESIDUAL) {
        // training keeps the product (before the bias), stored by the same epilogue
        g.gate = ep->gate, g.gate_stride = ep->gate_stride, g.gate_rows = ep->gate_rows, g.product = ep->product;
        g.residual = ep->residual;
    } else {
        g.stream_out = ep->stream;
    }
    return product_bf16(out, A, W, M, &g);
}

dit_status op_linear(const ops_context *ctx, linear_layer *L, float *out, const float *inp, int M, int group_rows,
                     const linear_epilogue *ep) {
    return op_linear_from(ctx, L, out, &(op_operand){.f32 = inp}, M, group_rows, ep);
}

dit_status op_linear_from(const ops_context *ctx, linear_layer *L, float *out, const op_operand *in, int M,
                          int group_rows, const linear_epilogue *ep) {
    const linear_epilogue plain = {.kind = LINEAR_PLAIN};
    if (!ep) ep = &plain;
    const int64_t n = (int64_t)M * L->N;
    if (ctx->precision == OPS_BF16) return linear_bf16(ctx, L, out, in, M, ep);
    const float *inp = in->f32;
    DIT_CHECK(inp != NULL);
    switch (ep->kind) {
    case LINEAR_PLAIN:
        DIT_TRY(linear_fp32(L, out, inp, L->bias, M, group_rows));
        break;
    case LINEAR_GELU: {
        // inference (no pre-activation kept): on AVX-512 the GELU is the product's epilogue, the same bits
        if (!ep->pre && ops_fp32_linear_is_ours())
            return gemm_f32_linear(out, inp, L->weight, L->bias, M, L->K, L->N, &(gemm_f32_epilogue){.gelu = 1});
        float *pre = ep->pre ? ep->pre : out;
        DIT_TRY(linear_fp32(L, pre, inp, L->bias, M, group_rows));
        gelu_tanh_forward(out, pre, n);
        break;
    }
    case LINEAR_GATED_RESIDUAL: {
        // the fp32 path adds in place: the stream copied into out first
        if (ep->residual && ep->residual != out) memcpy(out, ep->residual, (size_t)n * sizeof(float));
        // inference (the product not kept): on AVX-512 the gated residual is the product's epilogue, the same bits
        if (!ep->product && ops_fp32_linear_is_ours()) {
            const gemm_f32_epilogue gated = {.gate = ep->gate, .gate_stride = ep->gate_stride, .gate_rows = ep->gate_rows};
            return gemm_f32_linear(out, inp, L->weight, L->bias, M, L->K, L->N, &gated);
        }
        float *product = ep->product ? ep->product : ep->scratch;
        DIT_CHECK(product != NULL);
        DIT_TRY(linear_fp32(L, product, inp, NULL, M, group_rows));   // the bias goes in with the residual
        gated_residual_forward(out, product, L->bias, ep->gate, ep->gate_stride, M / ep->gate_rows, ep->gate_rows,
                               L->N);
        break;
    }
    }
    return DIT_OK;
}

// bf16 activations on their way between two ops (bf16 tiles), per thread, only grow: the MLP's hidden one,
// the normalised rows and attention's output.
typedef struct {
    uint16_t *data;
    size_t capacity;
} workspace16;

static _Thread_local workspace16 hidden16, norm16, attn16;

// Per-thread packing buffers of the linear backwards for the operands that change every call (the weight used
// transposed, the input activations as dweight's right operand); they only grow.
static _Thread_local bf16_packed backward_wt, backward_act;

// fc2's d input in training (d of the GELU's input) is fc1's dout: its product's epilogue makes it as fc1's
// backward's two bf16 left operands and column sums (gemm_epilogue.both) instead of in float32 (only the edge
// blocks are written), and the next linear backward, whose dout is that matrix (pending_dout_of), takes them.
// The attention's backward does the same for d qkv, the qkv linear's dout, where its shape allows.
static _Thread_local bf16_both pending_dout;
static _Thread_local const float *pending_dout_of;
static int fuse_dout = 1;
void ops_fuse_backward_dout(int on) { fuse_dout = on; }

// This file's per-thread buffers are freed when their thread ends.
static _Thread_local thread_exit_hook scratch_exit;

static void free_scratch(void *unused) {
    (void)unused;
    workspace16 *w16[] = {&hidden16, &norm16, &attn16};
    for (int i = 0; i < 3; i++) free(w16[i]->data), w16[i]->data = NULL, w16[i]->capacity = 0;
    bf16_packed_free(&backward_wt);
    bf16_packed_free(&backward_act);
    bf16_both_free(&pending_dout);
    pending_dout_of = NULL;
}

static void own_scratch(void) {
    scratch_exit.run = free_scratch;
    thread_exit_register(&scratch_exit);
}

// rows x kp elements, rows padded to 32 (the products read whole 32-row blocks; the padding rows' values are
// never used).
static uint16_t *workspace16_get(workspace16 *w, int rows, int kp) {
    const size_t elems = (size_t)(((int64_t)rows + 31) / 32 * 32) * (size_t)kp;
    own_scratch();
    if (w->capacity < elems) {
        free(w->data);
        w->capacity = 0;
        if (!(w->data = dit_malloc(elems * sizeof(uint16_t)))) return NULL;
        w->capacity = elems;
    }
    return w->data;
}

dit_status op_mlp(const ops_context *ctx, linear_layer *fc1, linear_layer *fc2, float *out, float *hidden,
                  const op_operand *inp, int M, int group_rows, float *pre, const linear_epilogue *ep) {
    const linear_epilogue gelu = {.kind = LINEAR_GELU, .pre = pre}, plain = {.kind = LINEAR_PLAIN};
    if (ctx->precision != OPS_BF16) {
        DIT_TRY(op_linear_from(ctx, fc1, hidden, inp, M, group_rows, &gelu));
        return op_linear(ctx, fc2, out, hidden, M, group_rows, ep);
    }
    const bf16_packed *W1 = prepared_bf16(ctx, fc1), *W2 = prepared_bf16(ctx, fc2);
    if (!W1 || !W2) return DIT_ERR;
    DIT_CHECK(W2->K == fc1->N && W2->Kp == W1->Np);
    // gelu(inp @ W1^T + b1) in bf16, written where fc2 reads it (columns padded to W2->Kp with zeros)
    uint16_t *h16 = workspace16_get(&hidden16, M, W2->Kp);
    if (!h16) return DIT_ERR;
    const a_layout layout = a_layout_tiles(W2->Kp);
    // streamed past the caches (no line of it read before it is written; 4.7 MB at DiT-XL/2 x 2, more than L2):
    // the XL/2 x 2 forward ~1% faster (9 of 12 and 9 of 16 interleaved forwards), the S/2 and Fashion-MNIST
    // training steps 1-3% (3 of 3 pairs each), AMX guest, seventeenth sitting
    const gemm_epilogue g = {.bias = fc1->bias, .gelu = 1, .pre_gelu = pre, .out16 = h16, .out16_layout = &layout,
                             .stream_out = 1};
    DIT_TRY(product_bf16(NULL, inp, W1, M, &g));
    return linear_bf16(ctx, fc2, out, &(op_operand){.b16 = h16, .kp = W2->Kp}, M, ep ? ep : &plain);
}

// The two products of a linear layer's backward on the bf16 path, with act (dweight's right operand, inp
// packed as B[k, m]) ready: dinp (M, K) = epilogue(dout (M, N) @ W (N, K)), B[k, n] = W[n, k] packed into wt;
// dweight (N, K) += dout^T (N, M) @ inp (M, K); dbias (N) += the column sums of dout. dout is rounded to bf16
// once for both products (and summed on the way), or was by the backward before (pending_dout); without dinp,
// only as dweight's transposed operand. With make_pending, dinp is also made as the next backward's operands.
static dit_status backward_products(const ops_context *ctx, linear_layer *L, float *dinp, float *dweight,
                                    float *dbias, const float *dout, int M, const gemm_epilogue *dinp_ep,
                                    int make_pending) {
    bf16_packed *wt = &backward_wt;
    const bf16_packed *act = &backward_act;
    own_scratch();
    const int N = L->N, K = L->K;
    // dout made by the backward before as pending_dout is not all written in float32: it must be taken
    const int take = !make_pending && pending_dout_of == dout;
    DIT_CHECK(!take || (pending_dout.M == M && pending_dout.N == N));
    pending_dout_of = NULL;
    const gemm_epilogue acc = {.accumulate = !ctx->fresh_weight_grads};
    if (!dinp && take) {
        if (dbias) bf16_both_add_sums(&pending_dout, dbias);
        const a_layout as_cols = a_layout_tiles(act->Kp);
        return gemm_bf16_a16(dweight, K, pending_dout.cols16, &as_cols, act, N, &acc);
    }
    if (!dinp) {
        const gemm_epilogue acc_sums = {.accumulate = !ctx->fresh_weight_grads, .a_row_sums = dbias};
        return gemm_bf16(dweight, K, dout, 1, N, act, N, &acc_sums);
    }
    const uint16_t *rows16, *cols16;
    if (take) {
        rows16 = pending_dout.rows16, cols16 = pending_dout.cols16;
        if (dbias) bf16_both_add_sums(&pending_dout, dbias);
    } else {
        DIT_TRY(bf16_convert_both(dout, M, N, &rows16, &cols16, dbias));
    }
    if (L->bf16_t.data && L->bf16_t_version == ctx->weights_version) wt = &L->bf16_t;   // made by the forward
    else DIT_TRY(bf16_pack(wt, L->weight, K, N, 1, K));
    const a_layout as_rows = a_layout_tiles(wt->Kp), as_cols = a_layout_tiles(act->Kp);
    gemm_epilogue ep = dinp_ep ? *dinp_ep : (gemm_epilogue){0};
    if (make_pending) {   // (rows16 / cols16 are not pending_dout's: it is not taken when it is to be remade)
        DIT_CHECK(dinp_ep && dinp_ep->gelu_grad_of);
        DIT_TRY(bf16_both_reserve(&pending_dout, M, K));
        ep.both = &pending_dout;
    }
    // make_pending implies dinp_ep; with out16 (d attn head by head) the float32 dinp is not written
    DIT_TRY(gemm_bf16_a16(ep.out16 ? NULL : dinp, K, rows16, &as_rows, wt, M, dinp_ep ? &ep : NULL));
    if (make_pending) {
        bf16_both_finish(&pending_dout, dinp);
        pending_dout_of = dinp;
    }
    return gemm_bf16_a16(dweight, K, cols16, &as_cols, act, N, &acc);
}

// The fp32 backward adds into dweight: with fresh weight gradients, zeros first.
static void fresh_fp32(const ops_context *ctx, float *dweight, const linear_layer *L) {
    if (ctx->fresh_weight_grads) memset(dweight, 0, (size_t)L->N * L->K * sizeof(float));
}

dit_status op_linear_backward(const ops_context *ctx, linear_layer *L, float *dinp, float *dweight, float *dbias,
                              const float *dout, const float *inp, int M) {
    if (ctx->precision != OPS_BF16) {
        fresh_fp32(ctx, dweight, L);
        linear_backward(dinp, dweight, dbias, dout, inp, L->weight, M, L->K, L->N);
        return DIT_OK;
    }
    DIT_TRY(bf16_pack(&backward_act, inp, L->K, M, 1, L->K));   // dweight's B[k, m] = inp[m, k]
    return backward_products(ctx, L, dinp, dweight, dbias, dout, M, NULL, 0);
}

dit_status op_linear_backward_modulated(const ops_context *ctx, linear_layer *L, float *dinp, float *dweight,
                                        float *dbias, const float *dout, const modulated_rows *in, float *h) {
    const int M = in->B * in->T;
    if (ctx->precision != OPS_BF16) {
        layernorm_modulate_forward(h, NULL, NULL, in->x, in->shift, in->scale, in->row_stride, in->B, in->T, in->D);
        fresh_fp32(ctx, dweight, L);
        linear_backward(dinp, dweight, dbias, dout, h, L->weight, M, L->K, L->N);
        return DIT_OK;
    }
    DIT_TRY(layernorm_modulate_pack_avx512(&backward_act, in));   // dweight's B[k, m] = y[m, k]
    return backward_products(ctx, L, dinp, dweight, dbias, dout, M, NULL, 0);
}

dit_status op_linear_backward_gelu(const ops_context *ctx, linear_layer *L, float *dpre, float *dweight, float *dbias,
                                   const float *dout, const float *pre, float *gelu_out, int M) {
    const int N = L->N, K = L->K;
    if (ctx->precision != OPS_BF16) {
        gelu_tanh_forward(gelu_out, pre, (int64_t)M * K);
        fresh_fp32(ctx, dweight, L);
        linear_backward(dpre, dweight, dbias, dout, gelu_out, L->weight, M, K, N);
        gelu_tanh_backward(dpre, dpre, pre, (int64_t)M * K);
        return DIT_OK;
    }
    // dweight's B[k, m] = gelu(pre[m, k]): made by the slope epilogue as it reads pre, when every block is whole
    const int in_epilogue = fuse_dout && M % 32 == 0 && K % 32 == 0;
    if (in_epilogue) DIT_TRY(bf16_packed_reserve(&backward_act, K, M));
    else DIT_TRY(bf16_pack_gelu(&backward_act, pre, K, M, K));
    // dpre = (dout @ W) * gelu'(pre)
    const gemm_epilogue slope = {.gelu_grad_of = pre, .gelu_act = in_epilogue ? &backward_act : NULL};
    return backward_products(ctx, L, dpre, dweight, dbias, dout, M, &slope, fuse_dout);
}

void op_layernorm_modulate(const ops_context *ctx, float *y, float *mean, float *rstd, const float *x,
                           const float *shift, const float *scale, int row_stride, int B, int T, int D) {
    if (ctx->precision == OPS_BF16)
        layernorm_modulate_forward_avx512(y, NULL, 0, mean, rstd, x, shift, scale, row_stride, B, T, D);
    else layernorm_modulate_forward(y, mean, rstd, x, shift, scale, row_stride, B, T, D);
}

void op_layernorm_modulate_backward(const ops_context *ctx, float *dx, float *dshift, float *dscale, const float *dy,
                                    const float *x, const float *mean, const float *rstd, const float *scale,
                                    int row_stride, int B, int T, int D) {
    if (ctx->precision == OPS_BF16)
        layernorm_modulate_backward_avx512(dx, dshift, dscale, dy, x, mean, rstd, scale, row_stride, B, T, D);
    else layernorm_modulate_backward(dx, dshift, dscale, dy, x, mean, rstd, scale, row_stride, B, T, D);
}

dit_status op_layernorm_modulate_operand(const ops_context *ctx, op_operand *y_op, float *y, float *mean, float *rstd,
                                         const float *x, const float *shift, const float *scale, int row_stride, int B,
                                         int T, int D) {
    if (ctx->precision != OPS_BF16) {
        layernorm_modulate_forward(y, mean, rstd, x, shift, scale, row_stride, B, T, D);
        *y_op = op_floats(y);
        return DIT_OK;
    }
    const int kp = (D + 31) / 32 * 32;
    uint16_t *y16 = workspace16_get(&norm16, B * T, kp);
    if (!y16) return DIT_ERR;
    layernorm_modulate_forward_avx512(NULL, y16, kp, mean, rstd, x, shift, scale, row_stride, B, T, D);
    *y_op = (op_operand){.b16 = y16, .kp = kp};
    return DIT_OK;
}

// ---- attention ------------------------------------------------------------------------------------------

static int qkv16_on = 1;
void ops_qkv_bf16(int on) { qkv16_on = on; }

qkv_form ops_qkv_form(const ops_context *ctx, int T, int D, int H) {
    if (ctx->precision != OPS_BF16 || !qkv16_on) return QKV_F32;
    // head by head: every 32 x 32 block of the product is 32 rows of one sample in one head's part, or split
    // between two (heads of 72: gemm_epilogue.head_major_hd)
    if (T % 32 == 0 && D % 32 == 0 && D % H == 0 && D / H >= 32) return QKV_BF16_HEADS;
    // row-major: every block's rows are whole 32-column runs of the operand
    return 3 * D % 32 == 0 ? QKV_BF16_ROWS : QKV_F32;
}

static qkv_rows qkv_as_written(const ops_context *ctx, const float *qkv, int T, int D, int H) {
    const qkv_form form = ops_qkv_form(ctx, T, D, H);
    if (form == QKV_F32) return (qkv_rows){.f32 = qkv};
    return (qkv_rows){.b16 = (const uint16_t *)(const void *)qkv, .head_major = form == QKV_BF16_HEADS};
}

dit_status op_qkv(const ops_context *ctx, linear_layer *L, float *qkv, const op_operand *inp, int B, int T, int H,
                  int group_rows, int keep) {
    DIT_CHECK(L->N % 3 == 0);
    const int D = L->N / 3;
    const qkv_form form = ops_qkv_form(ctx, T, D, H);
    if (form == QKV_F32) {
        const linear_epilogue kept = {.kind = LINEAR_PLAIN, .stream = keep};
        return op_linear_from(ctx, L, qkv, inp, B * T, group_rows, &kept);
    }
    const bf16_packed *W = prepared_bf16(ctx, L);
    if (!W) return DIT_ERR;
    const a_layout rows = a_layout_rows(L->N);
    gemm_epilogue g = {.bias = L->bias, .out16 = (uint16_t *)(void *)qkv, .stream_out = keep};
    if (form == QKV_BF16_HEADS) g.head_major_T = T, g.head_major_hd = D / H, g.head_major_groups = 3 * H;
    else g.out16_layout = &rows;
    return product_bf16(NULL, inp, W, B * T, &g);
}

// values (rows, cols) rounded to bf16 into b16: row-major (hd = 0), or head by head as the head-major epilogue
// writes them (hd-wide column groups of T-row samples: group g of sample b at (b * cols / hd + g) * T * hd).
static void store_rounded(uint16_t *b16, const float *values, int64_t rows, int cols, int T, int hd) {
    for (int64_t i = 0; i < rows * cols; i++) {
        const int64_t m = i / cols;
        const int col = (int)(i % cols);
        const int64_t at = hd ? ((m / T * (cols / hd) + col / hd) * T + m % T) * hd + col % hd : i;
        b16[at] = bf16_bits_from_float(values[i]);
    }
}

void ops_qkv_store(const ops_context *ctx, float *qkv, const float *values, int B, int T, int D, int H) {
    const qkv_form form = ops_qkv_form(ctx, T, D, H);
    if (form == QKV_F32) memcpy(qkv, values, (size_t)B * T * 3 * D * sizeof(float));
    else store_rounded((uint16_t *)(void *)qkv, values, (int64_t)B * T, 3 * D, T, form == QKV_BF16_HEADS ? D / H : 0);
}

// d attn in bf16 head by head where qkv is (both need whole 32 x 32 blocks, each in at most two heads), else float32
static int dout_in_heads(const ops_context *ctx, int T, int D, int H) {
    return ops_qkv_form(ctx, T, D, H) == QKV_BF16_HEADS;
}

static attn_dout dout_as_written(const ops_context *ctx, const float *d_attn, int T, int D, int H) {
    if (dout_in_heads(ctx, T, D, H)) return (attn_dout){.b16 = (const uint16_t *)(const void *)d_attn};
    return (attn_dout){.f32 = d_attn};
}

dit_status op_attention_out_backward(const ops_context *ctx, linear_layer *L, float *d_attn, float *dweight,
                                     float *dbias, const float *dout, const float *attn, int B, int T, int H) {
    const int D = L->K;
    if (!dout_in_heads(ctx, T, D, H)) return op_linear_backward(ctx, L, d_attn, dweight, dbias, dout, attn, B * T);
    DIT_TRY(bf16_pack(&backward_act, attn, D, B * T, 1, D));   // dweight's B[k, m] = attn[m, k]
    const gemm_epilogue heads = {.out16 = (uint16_t *)(void *)d_attn, .head_major_T = T, .head_major_hd = D / H,
                                 .head_major_groups = H};
    return backward_products(ctx, L, d_attn, dweight, dbias, dout, B * T, &heads, 0);
}

void ops_attention_dout_store(const ops_context *ctx, float *d_attn, const float *values, int B, int T, int D, int H) {
    if (!dout_in_heads(ctx, T, D, H)) memcpy(d_attn, values, (size_t)B * T * D * sizeof(float));
    else store_rounded((uint16_t *)(void *)d_attn, values, (int64_t)B * T, D, T, D / H);
}

dit_status op_attention(const ops_context *ctx, float *out, const float *qkv, float *stats, float *scratch, int B,
                        int T, int D, int H) {
    if (ctx->precision == OPS_BF16)
        return attention_forward_bf16(out, NULL, 0, qkv_as_written(ctx, qkv, T, D, H), stats, B, T, D, H);
    attention_forward(out, qkv, scratch, B, T, D, H);
    return DIT_OK;
}

dit_status op_attention_operand(const ops_context *ctx, op_operand *out_op, float *out, const float *qkv,
                                float *scratch, int B, int T, int D, int H) {
    *out_op = op_floats(out);
    if (ctx->precision != OPS_BF16 || (D / H) % 8 != 0) return op_attention(ctx, out, qkv, NULL, scratch, B, T, D, H);
    const int kp = (D + 31) / 32 * 32;
    uint16_t *out16 = workspace16_get(&attn16, B * T, kp);
    if (!out16) return DIT_ERR;
    DIT_TRY(attention_forward_bf16(NULL, out16, kp, qkv_as_written(ctx, qkv, T, D, H), NULL, B, T, D, H));
    *out_op = (op_operand){.b16 = out16, .kp = kp};
    return DIT_OK;
}

dit_status op_attention_backward(const ops_context *ctx, float *dqkv, const float *dout, const float *qkv,
                                 const float *stats, float *scratch, int B, int T, int D, int H) {
    if (ctx->precision == OPS_BF16 && fuse_dout && attention_backward_fills_both(B, T, D, H)) {
        // d qkv made directly as the qkv linear backward's operands (pending_dout), not in float32
        own_scratch();
        pending_dout_of = NULL;
        DIT_TRY(bf16_both_reserve(&pending_dout, B * T, 3 * D));
        DIT_TRY(attention_backward_bf16(dqkv, &pending_dout, dout_as_written(ctx, dout, T, D, H),
                                        qkv_as_written(ctx, qkv, T, D, H), stats, B, T, D, H));
        pending_dout_of = dqkv;
        return DIT_OK;
    }
    if (ctx->precision == OPS_BF16)
        return attention_backward_bf16(dqkv, NULL, dout_as_written(ctx, dout, T, D, H), qkv_as_written(ctx, qkv, T, D, H),
                                       stats, B, T, D, H);
    attention_backward(dqkv, dout, qkv, scratch, B, T, D, H);
    return DIT_OK;
}

void op_cross_attention(const ops_context *ctx, float *out, const float *q, const float *kv, int B, int T, int S,
                        int D, int H) {
    (void)ctx;
    cross_attention_forward(out, q, kv, B, T, S, D, H);
}

void op_cross_attention_backward(const ops_context *ctx, float *dq, float *dkv, const float *dout, const float *q,
                                 const float *kv, int B, int T, int S, int D, int H) {
    (void)ctx;
    cross_attention_backward(dq, dkv, dout, q, kv, B, T, S, D, H);
}
