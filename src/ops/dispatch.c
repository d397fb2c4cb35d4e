// Op dispatch by precision (see dispatch.h). The fp32 branches are exactly the kernel sequences the model
// ran before dispatch existed; the bf16 branches fuse the epilogue into the product.
#include "ops/dispatch.h"

#include <string.h>

#include "base/error.h"
#include "ops/cpu/cpu_features.h"
#include "ops/ops.h"

void linear_layer_init(linear_layer *L, const float *weight, const float *bias, int N, int K) {
    linear_layer_free(L);
    L->weight = weight, L->bias = bias, L->N = N, L->K = K;
}

void linear_layer_free(linear_layer *L) {
    bf16_packed_free(&L->bf16);
    memset(L, 0, sizeof *L);
}

static const bf16_packed *prepared_bf16(const ops_context *ctx, linear_layer *L) {
    if (L->bf16_version != ctx->weights_version || !L->bf16.data) {
        if (bf16_pack(&L->bf16, L->weight, L->N, L->K, L->K, 1) != DIT_OK) return NULL;
        L->bf16_version = ctx->weights_version;
    }
    return &L->bf16;
}

static void linear_fp32(linear_layer *L, float *out, const float *inp, const float *bias, int M, int group_rows) {
    const int rows = group_rows > 0 ? group_rows : M;
    for (int r = 0; r < M; r += rows)
        linear_forward(out + (int64_t)r * L->N, inp + (int64_t)r * L->K, L->weight, bias, rows, L->K, L->N);
}

dit_status op_linear(const ops_context *ctx, linear_layer *L, float *out, const float *inp, int M, int group_rows,
                     const linear_epilogue *ep) {
    const linear_epilogue plain = {.kind = LINEAR_PLAIN};
    if (!ep) ep = &plain;
    const int64_t n = (int64_t)M * L->N;
    if (ctx->precision == OPS_BF16) {
        const bf16_packed *W = prepared_bf16(ctx, L);
        if (!W) return DIT_ERR;
        gemm_epilogue g = {.bias = L->bias};
        if (ep->kind == LINEAR_GELU) {
            g.gelu = 1;
            g.pre_gelu = ep->pre;
        } else if (ep->kind == LINEAR_GATED_RESIDUAL) {
            if (ep->product) {   // training keeps the product: store it, then the same residual op as fp32
                DIT_TRY(gemm_bf16(ep->product, L->N, inp, L->K, 1, W, M, NULL));
                gated_residual_forward(out, ep->product, L->bias, ep->gate, ep->gate_stride, M / ep->gate_rows,
                                       ep->gate_rows, L->N);
                return DIT_OK;
            }
            g.gate = ep->gate, g.gate_stride = ep->gate_stride, g.gate_rows = ep->gate_rows;
        }
        return gemm_bf16(out, L->N, inp, L->K, 1, W, M, &g);
    }
    switch (ep->kind) {
    case LINEAR_PLAIN:
        linear_fp32(L, out, inp, L->bias, M, group_rows);
        break;
    case LINEAR_GELU: {
        float *pre = ep->pre ? ep->pre : out;
        linear_fp32(L, pre, inp, L->bias, M, group_rows);
        gelu_tanh_forward(out, pre, n);
        break;
    }
    case LINEAR_GATED_RESIDUAL: {
        float *product = ep->product ? ep->product : ep->scratch;
        DIT_CHECK(product != NULL);
        linear_fp32(L, product, inp, NULL, M, group_rows);   // the bias goes in with the residual
        gated_residual_forward(out, product, L->bias, ep->gate, ep->gate_stride, M / ep->gate_rows, ep->gate_rows,
                               L->N);
        break;
    }
    }
    return DIT_OK;
}

dit_status op_linear_backward(const ops_context *ctx, linear_layer *L, float *dinp, float *dweight, float *dbias,
                              const float *dout, const float *inp, int M) {
    if (ctx->precision != OPS_BF16) {
        linear_backward(dinp, dweight, dbias, dout, inp, L->weight, M, L->K, L->N);
        return DIT_OK;
    }
    const int N = L->N, K = L->K;
    // Per-thread packing buffers for the operands that change every call (the weight used transposed and
    // the activations); they only grow.
    static _Thread_local bf16_packed wt, act;
    if (dinp) {
        // dinp (M, K) = dout (M, N) @ W (N, K): B[k, n] = W[n, k]
        DIT_TRY(bf16_pack(&wt, L->weight, K, N, 1, K));
        DIT_TRY(gemm_bf16(dinp, K, dout, N, 1, &wt, M, NULL));
    }
    // dweight (N, K) += dout^T (N, M) @ inp (M, K): A[n, m] = dout[m, n], B[k, m] = inp[m, k]
    DIT_TRY(bf16_pack(&act, inp, K, M, 1, K));
    gemm_epilogue acc = {.accumulate = 1};
    DIT_TRY(gemm_bf16(dweight, K, dout, 1, N, &act, N, &acc));
    if (dbias) bias_backward(dbias, dout, M, N);
    return DIT_OK;
}

void op_layernorm_modulate(const ops_context *ctx, float *y, float *mean, float *rstd, const float *x,
                           const float *shift, const float *scale, int row_stride, int B, int T, int D) {
    if (ctx->precision == OPS_BF16) layernorm_modulate_forward_avx512(y, mean, rstd, x, shift, scale, row_stride, B, T, D);
    else layernorm_modulate_forward(y, mean, rstd, x, shift, scale, row_stride, B, T, D);
}

dit_status op_attention(const ops_context *ctx, float *out, const float *qkv, float *scratch, int B, int T, int D,
                        int H) {
    if (ctx->precision == OPS_BF16) return attention_forward_bf16(out, qkv, B, T, D, H);
    attention_forward(out, qkv, scratch, B, T, D, H);
    return DIT_OK;
}

dit_status op_attention_backward(const ops_context *ctx, float *dqkv, const float *dout, const float *qkv,
                                 float *scratch, int B, int T, int D, int H) {
    if (ctx->precision == OPS_BF16) return attention_backward_bf16(dqkv, dout, qkv, B, T, D, H);
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
