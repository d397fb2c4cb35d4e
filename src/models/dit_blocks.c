// The block designs of the paper's Fig. 3 / Fig. 5 other than adaLN-Zero (reference.md §1.13), forward and
// backward: adaLN (the modulation without gates), cross-attention (plain blocks with a cross-attention over
// the two tokens [t_emb, y_emb]) and in-context (plain blocks; t_emb, y_emb appended as two tokens). The
// adaLN-Zero block stays in dit_forward.c / dit_backward.c; the walk calls into this file for the others.
#include <string.h>

#include "base/error.h"
#include "models/dit_model.h"
#include "ops/ops.h"

int dit_block_adaptive(const dit_config *c) { return c->block == DIT_BLOCK_ADALN_ZERO || c->block == DIT_BLOCK_ADALN; }

// ---- conditioning tokens ------------------------------------------------------------------------

void dit_condition_tokens_forward(const dit_model *m, const dit_forward_plan *plan, const int *y, int B) {
    const int64_t T = dit_config_tokens(&m->cfg), Ts = m->seq_tokens, D = m->cfg.hidden_size;
    const float *t_emb = plan->cond;   // (B, D): the label is not added yet
    if (m->cfg.block == DIT_BLOCK_CROSS_ATTENTION) {
        for (int b = 0; b < B; b++) {   // context (B, 2, D) = [t_emb, y_emb]
            memcpy(plan->context + b * 2 * D, t_emb + b * D, D * sizeof(float));
            memcpy(plan->context + b * 2 * D + D, m->p.y_table + (int64_t)y[b] * D, D * sizeof(float));
        }
    } else if (m->cfg.block == DIT_BLOCK_IN_CONTEXT) {
        // (B * T, D) patch tokens -> (B, T + 2, D): each sample's tokens move up (last sample first, so no
        // source is overwritten before it moves), followed by t_emb and y_emb (no position embedding)
        float *x = plan->block(plan, 0).x_in;
        for (int b = B - 1; b >= 0; b--) {
            memmove(x + b * Ts * D, x + b * T * D, T * D * sizeof(float));
            memcpy(x + (b * Ts + T) * D, t_emb + b * D, D * sizeof(float));
            memcpy(x + (b * Ts + T + 1) * D, m->p.y_table + (int64_t)y[b] * D, D * sizeof(float));
        }
    }
}

const float *dit_condition_tokens_backward(const dit_model *m, dit_train_activations *a) {
    const int64_t T = dit_config_tokens(&m->cfg), Ts = m->seq_tokens, D = m->cfg.hidden_size;
    const int B = a->batch;
    for (int b = 0; b < B; b++) {
        // the gradient of [t_emb, y_emb]: the context's, or the stream's at tokens T and T + 1
        const float *d_tokens = m->cfg.block == DIT_BLOCK_CROSS_ATTENTION ? a->d_context + b * 2 * D
                                                                          : a->d_res + (b * Ts + T) * D;
        memcpy(a->d_cond + b * D, d_tokens, D * sizeof(float));
        memcpy(a->d_label + b * D, d_tokens + D, D * sizeof(float));
        // in-context: pack the patch tokens' gradient to (B * T, D) for the patch embedding (first sample
        // first: a destination never reaches a later sample's source)
        if (m->cfg.block == DIT_BLOCK_IN_CONTEXT) memmove(a->d_res + b * T * D, a->d_res + b * Ts * D, T * D * sizeof(float));
    }
    return a->d_label;
}

// ---- the norms of an ungated block --------------------------------------------------------------

// adaLN: modulate(LN(x), shift, scale) with shift, scale rows of the (B, 4D) adaLN output (chunks shift_msa,
// scale_msa, shift_mlp, scale_mlp). The plain blocks: LN(x) * weight + bias, nn.LayerNorm with its affine.
typedef struct {
    const float *weight, *bias;    // plain: (D), else NULL
    float *d_weight, *d_bias;      // their gradients (backward; NULL in the forward)
    const float *shift, *scale;    // adaLN: rows of stride 4D
    float *d_shift, *d_scale;      // their gradients, rows of a->d_ada (overwritten)
} block_norm;

// which = 0: norm1 (before attention), 1: norm2 (before the MLP). ada, d_ada: the adaLN output and its gradient.
static block_norm norm_of(const dit_model *m, const dit_block_params *bp, const dit_block_params *gp, int which,
                          const float *ada, float *d_ada) {
    const int D = m->cfg.hidden_size;
    if (m->cfg.block == DIT_BLOCK_ADALN)
        return (block_norm){.shift = ada + 2 * which * D, .scale = ada + (2 * which + 1) * D,
                            .d_shift = d_ada ? d_ada + 2 * which * D : NULL,
                            .d_scale = d_ada ? d_ada + (2 * which + 1) * D : NULL};
    return (block_norm){.weight = which ? bp->norm2_w : bp->norm1_w, .bias = which ? bp->norm2_b : bp->norm1_b,
                        .d_weight = gp ? (which ? gp->norm2_w : gp->norm1_w) : NULL,
                        .d_bias = gp ? (which ? gp->norm2_b : gp->norm1_b) : NULL};
}

static void norm_forward(float *y, float *mean, float *rstd, const float *x, const block_norm *n, int B, int T, int D) {
    if (n->weight) layernorm_affine_forward(y, mean, rstd, x, n->weight, n->bias, (int64_t)B * T, D);
    else layernorm_modulate_forward(y, mean, rstd, x, n->shift, n->scale, 4 * D, B, T, D);
}

// dx += dL/dx; the norm's parameters' (or modulation's) gradients as block_norm says.
static void norm_backward(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                          const block_norm *n, int B, int T, int D) {
    if (n->weight) layernorm_affine_backward(dx, n->d_weight, n->d_bias, dy, x, mean, rstd, n->weight, (int64_t)B * T, D);
    else layernorm_modulate_backward(dx, n->d_shift, n->d_scale, dy, x, mean, rstd, n->scale, 4 * D, B, T, D);
}

// x_out = x_in + branch, n elements (x_out may be x_in): a residual connection without a gate.
static void residual_add(float *x_out, const float *x_in, const float *branch, int64_t n) {
    #pragma omp parallel for schedule(guided)
    for (int64_t i = 0; i < n; i++) x_out[i] = x_in[i] + branch[i];
}

// x_out (M, N) = x_in + inp @ W^T + b: a residual branch without a gate (x_out may be x_in); product: (M, N)
static dit_status residual_linear(const ops_context *ops, linear_layer *L, float *x_out, const float *x_in,
                                  const float *inp, int M, int group_rows, float *product) {
    DIT_TRY(op_linear(ops, L, product, inp, M, group_rows, NULL));
    residual_add(x_out, x_in, product, (int64_t)M * L->N);
    return DIT_OK;
}

static void add_into(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

// ---- the ungated block --------------------------------------------------------------------------

// x_mid   = x_in + attn(norm1(x_in))
// x_cross = x_mid + cross_attn(norm_cross(x_mid), context)   (cross-attention; else x_cross = x_mid)
// x_out   = x_cross + mlp(norm2(x_cross))
dit_status dit_ungated_block_forward(const dit_model *m, dit_block_layers *bl, const dit_forward_plan *plan, int l, int B) {
    const ops_context *ops = &m->ops;
    const int T = m->seq_tokens, D = m->cfg.hidden_size, H = m->cfg.num_heads, BT = B * T;
    const int rows = plan->per_sample ? T : 0, one = plan->per_sample ? 1 : 0;
    const dit_block_params *bp = &m->p.blocks[l];
    const dit_block_slots s = plan->block(plan, l);
    // adaLN: ada (B, 4D) = SiLU(c) @ W^T + b, chunks shift_msa, scale_msa, shift_mlp, scale_mlp
    if (m->cfg.block == DIT_BLOCK_ADALN) DIT_TRY(op_linear(ops, &bl->ada, s.ada, plan->cond_act, B, one, NULL));
    const block_norm norm1 = norm_of(m, bp, NULL, 0, s.ada, NULL), norm2 = norm_of(m, bp, NULL, 1, s.ada, NULL);

    norm_forward(plan->h, s.mean1, s.rstd1, s.x_in, &norm1, B, T, D);
    const op_operand h = op_floats(plan->h);
    DIT_TRY(op_qkv(ops, &bl->qkv, s.qkv, &h, B, T, H, rows, plan->keeps_activations));         // (BT, 3D)
    DIT_TRY(op_attention(ops, s.attn, s.qkv, s.attn_stats, plan->scores, B, T, D, H));           // (BT, D)
    DIT_TRY(residual_linear(ops, &bl->proj, s.x_mid, s.x_in, s.attn, BT, rows, plan->scratch));

    if (m->cfg.block == DIT_BLOCK_CROSS_ATTENTION) {
        const block_norm cross_norm = {.weight = bp->cross_norm_w, .bias = bp->cross_norm_b};
        norm_forward(plan->h, s.mean_cross, s.rstd_cross, s.x_mid, &cross_norm, B, T, D);
        DIT_TRY(op_linear(ops, &bl->cross_q, s.cross_q, plan->h, BT, rows, NULL));             // (BT, D)
        DIT_TRY(op_linear(ops, &bl->cross_kv, s.cross_kv, plan->context, 2 * B, 2 * one, NULL)); // (B, 2, 2D) [k | v]
        op_cross_attention(ops, s.cross_out, s.cross_q, s.cross_kv, B, T, 2, D, H);    // (BT, D)
        DIT_TRY(residual_linear(ops, &bl->cross_proj, s.x_cross, s.x_mid, s.cross_out, BT, rows, plan->scratch));
    }

    norm_forward(plan->h, s.mean2, s.rstd2, s.x_cross, &norm2, B, T, D);
    // x_out = x_cross + fc2(gelu(fc1(h2)))
    const op_operand h2 = op_floats(plan->h);
    DIT_TRY(op_mlp(ops, &bl->fc1, &bl->fc2, plan->scratch, s.mlp, &h2, BT, rows, s.fc1, NULL));   // (BT, D)
    residual_add(s.x_out, s.x_cross, plan->scratch, (int64_t)BT * D);
    return DIT_OK;
}

// On entry a->d_res = dL/d(block output); on exit dL/d(block input). Parameter gradients accumulate into gp.
dit_status dit_ungated_block_backward(dit_model *m, dit_train_activations *a, const dit_block_params *bp,
                                      const dit_block_params *gp, int l) {
    const ops_context *ops = &m->ops;
    const int B = a->batch, T = m->seq_tokens, D = m->cfg.hidden_size, H = m->cfg.num_heads;
    const int BT = B * T;
    dit_block_layers *bl = &m->layers.blocks[l];
    const dit_block_slots s = dit_train_block_slots(m, a, l);
    const block_norm norm1 = norm_of(m, bp, gp, 0, s.ada, a->d_ada), norm2 = norm_of(m, bp, gp, 1, s.ada, a->d_ada);

    // x_out = x_cross + fc2(gelu(fc1(h2))) + b;  h2 = norm2(x_cross)
    DIT_TRY(op_linear_backward_gelu(ops, &bl->fc2, a->d_mlp, gp->fc2_w, gp->fc2_b, a->d_res, s.fc1, a->gelu, BT));
    norm_forward(a->h, NULL, NULL, s.x_cross, &norm2, B, T, D);
    DIT_TRY(op_linear_backward(ops, &bl->fc1, a->d_h, gp->fc1_w, gp->fc1_b, a->d_mlp, a->h, BT));
    norm_backward(a->d_res, a->d_h, s.x_cross, s.mean2, s.rstd2, &norm2, B, T, D);

    if (m->cfg.block == DIT_BLOCK_CROSS_ATTENTION) {
        // x_cross = x_mid + proj(cross_attention(q(hx), kv(context))) + b;  hx = norm_cross(x_mid)
        const block_norm cross_norm = {.weight = bp->cross_norm_w, .bias = bp->cross_norm_b,
                                       .d_weight = gp->cross_norm_w, .d_bias = gp->cross_norm_b};
        float *d_q = a->d_tmp;   // (BT, D)
        DIT_TRY(op_linear_backward(ops, &bl->cross_proj, a->d_attn, gp->cross_proj_w, gp->cross_proj_b, a->d_res,
                                   s.cross_out, BT));
        op_cross_attention_backward(ops, d_q, a->d_kv, a->d_attn, s.cross_q, s.cross_kv, B, T, 2, D, H);
        DIT_TRY(op_linear_backward(ops, &bl->cross_kv, a->d_context_part, gp->cross_kv_w, gp->cross_kv_b, a->d_kv,
                                   a->context, 2 * B));
        add_into(a->d_context, a->d_context_part, (int64_t)B * 2 * D);
        norm_forward(a->h, NULL, NULL, s.x_mid, &cross_norm, B, T, D);
        DIT_TRY(op_linear_backward(ops, &bl->cross_q, a->d_h, gp->cross_q_w, gp->cross_q_b, d_q, a->h, BT));
        norm_backward(a->d_res, a->d_h, s.x_mid, s.mean_cross, s.rstd_cross, &cross_norm, B, T, D);
    }

    // x_mid = x_in + proj(attention(qkv(h1))) + b;  h1 = norm1(x_in)
    DIT_TRY(op_attention_out_backward(ops, &bl->proj, a->d_attn, gp->proj_w, gp->proj_b, a->d_res, s.attn, B, T, H));
    DIT_TRY(op_attention_backward(ops, a->d_qkv, a->d_attn, s.qkv, s.attn_stats, a->scores, B, T, D, H));
    norm_forward(a->h, NULL, NULL, s.x_in, &norm1, B, T, D);
    DIT_TRY(op_linear_backward(ops, &bl->qkv, a->d_h, gp->qkv_w, gp->qkv_b, a->d_qkv, a->h, BT));
    norm_backward(a->d_res, a->d_h, s.x_in, s.mean1, s.rstd1, &norm1, B, T, D);

    if (m->cfg.block == DIT_BLOCK_ADALN) {   // ada = SiLU(c) @ W^T + b
        DIT_TRY(op_linear_backward(ops, &bl->ada, a->d_small, gp->ada_w, gp->ada_b, a->d_ada, a->cond_act, B));
        add_into(a->d_cond, a->d_small, (int64_t)B * D);
    }
    return DIT_OK;
}

// ---- the plain final LayerNorm ------------------------------------------------------------------

// In-context sequences hold T + 2 tokens per sample and the norm reads only the first T of each, so it runs
// per sample there; otherwise over all B * T rows at once (the same rows either way).
void dit_plain_final_norm_forward(const dit_model *m, const dit_forward_plan *plan, const float *x_final, int B) {
    const int64_t T = dit_config_tokens(&m->cfg), Ts = m->seq_tokens, D = m->cfg.hidden_size;
    const int calls = Ts == T ? 1 : B, rows = Ts == T ? B * (int)T : (int)T;
    for (int b = 0; b < calls; b++)
        layernorm_affine_forward(plan->h + b * T * D, plan->final_mean ? plan->final_mean + b * T : NULL,
                                 plan->final_rstd ? plan->final_rstd + b * T : NULL, x_final + b * Ts * D,
                                 m->p.final_norm_w, m->p.final_norm_b, rows, (int)D);
}

void dit_plain_final_norm_backward(dit_model *m, dit_train_activations *a, const dit_params *gp) {
    const int B = a->batch, L = m->cfg.depth;
    const int64_t T = dit_config_tokens(&m->cfg), Ts = m->seq_tokens, D = m->cfg.hidden_size, BTs = B * Ts;
    const float *x_final = a->x_in + L * BTs * D, *mean = a->ln_mean + 2 * L * BTs, *rstd = a->ln_rstd + 2 * L * BTs;
    const int calls = Ts == T ? 1 : B, rows = Ts == T ? B * (int)T : (int)T;
    memset(a->d_res, 0, (size_t)BTs * D * sizeof(float));   // the conditioning tokens get nothing here
    for (int b = 0; b < calls; b++)
        layernorm_affine_backward(a->d_res + b * Ts * D, gp->final_norm_w, gp->final_norm_b, a->d_h + b * T * D,
                                  x_final + b * Ts * D, mean + b * T, rstd + b * T, m->p.final_norm_w, rows, (int)D);
    // the walk back starts here for the plain designs: the context's gradient sums over the blocks from 0
    if (a->d_context) memset(a->d_context, 0, (size_t)B * 2 * D * sizeof(float));
}

// ---- training buffers ---------------------------------------------------------------------------

static float *floats(int64_t n) { return dit_malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

dit_status dit_blocks_train_alloc(const dit_model *m, dit_train_activations *a) {
    if (dit_block_adaptive(&m->cfg)) return DIT_OK;
    const int64_t B = a->batch, BT = B * m->seq_tokens, D = m->cfg.hidden_size, L = m->cfg.depth;
    a->context = floats(B * 2 * D);
    a->d_context = floats(B * 2 * D);
    a->d_label = floats(B * D);
    if (!a->context || !a->d_context || !a->d_label) return DIT_ERR;
    if (m->cfg.block != DIT_BLOCK_CROSS_ATTENTION) return DIT_OK;
    a->x_cross = floats(L * BT * D);
    a->cross_q = floats(L * BT * D);
    a->cross_out = floats(L * BT * D);
    a->cross_kv = floats(L * B * 4 * D);
    a->cross_mean = floats(L * BT);
    a->cross_rstd = floats(L * BT);
    a->d_context_part = floats(B * 2 * D);
    a->d_kv = floats(B * 4 * D);
    const float *bufs[] = {a->x_cross, a->cross_q, a->cross_out, a->cross_kv, a->cross_mean, a->cross_rstd,
                           a->d_context_part, a->d_kv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (!bufs[i]) return DIT_ERR;   // the caller frees what was made (dit_blocks_train_free)
    return DIT_OK;
}

void dit_blocks_train_free(dit_train_activations *a) {
    float *bufs[] = {a->context, a->x_cross, a->cross_q, a->cross_out, a->cross_kv, a->cross_mean, a->cross_rstd,
                     a->d_context, a->d_context_part, a->d_kv, a->d_label};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}
