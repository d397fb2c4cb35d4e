// Training: a forward pass that keeps the activations of reference.md §1.1 the backward needs, and
// dit_backward, which walks the layers back (final layer, blocks N-1..0, patch embedding, conditioning)
// and accumulates parameter gradients into a buffer laid out as the parameters (checked against the
// PyTorch reference's autograd in tests/test_backward.c).
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/threads.h"
#include "models/dit_model.h"
#include "ops/ops.h"

static int imax(int a, int b) { return a > b ? a : b; }

static float *floats(int64_t n) { return dit_malloc((size_t)(n > 0 ? n : 1) * sizeof(float)); }

dit_train_activations *dit_train_activations_create(const dit_model *m, int batch) {
    const dit_config *c = &m->cfg;
    DIT_CHECK(batch > 0);
    const int64_t B = batch, T = m->seq_tokens, D = c->hidden_size, M = m->mlp_hidden, L = c->depth;
    const int P = c->patch_size;
    const int64_t BT = B * T;
    const int64_t gated = c->block == DIT_BLOCK_ADALN_ZERO;   // only gates need the products kept
    dit_train_activations *a = dit_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->batch = batch;
    a->patches = floats(BT * c->in_channels * P * P);
    a->x_in = floats((L + 1) * BT * D);
    a->x_mid = floats(L * BT * D);
    a->qkv = floats(L * BT * 3 * D);
    a->attn = floats(L * BT * D);
    a->attn_stats = floats(L * B * c->num_heads * T * 2);
    a->proj = floats(gated * L * BT * D);
    a->fc1 = floats(L * BT * M);
    a->fc2 = floats(gated * L * BT * D);
    a->ln_mean = floats((2 * L + 1) * BT);
    a->ln_rstd = floats((2 * L + 1) * BT);
    a->ada = floats(L * B * 6 * D + B * 2 * D);
    a->temb = floats(B * 256);
    a->t_hidden = floats(B * D);
    a->t_act = floats(B * D);
    a->cond = floats(B * D);
    a->cond_act = floats(B * D);
    a->labels = dit_malloc(B * sizeof(int));
    a->h = floats(BT * D);
    a->gelu = floats(BT * M);
    a->d_res = floats(BT * D);
    a->d_h = floats(BT * D);
    a->d_tmp = floats(BT * imax((int)D, P * P * dit_config_out_channels(c)));
    a->d_attn = floats(BT * D);
    a->d_qkv = floats(BT * 3 * D);
    a->d_mlp = floats(BT * M);
    a->d_ada = floats(B * 6 * D);
    a->d_cond = floats(B * D);
    a->d_small = floats(B * D);
    a->grad_blocks = dit_calloc(L ? L : 1, sizeof *a->grad_blocks);
    float *bufs[] = {a->patches, a->x_in, a->x_mid, a->qkv, a->attn, a->attn_stats, a->proj, a->fc1, a->fc2, a->ln_mean,
                     a->ln_rstd, a->ada, a->temb, a->t_hidden, a->t_act, a->cond, a->cond_act, a->h, a->gelu,
                     a->d_res, a->d_h, a->d_tmp, a->d_attn, a->d_qkv, a->d_mlp, a->d_ada, a->d_cond, a->d_small};
    int missing = !a->labels || !a->grad_blocks;
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) missing |= !bufs[i];
    if (missing || dit_blocks_train_alloc(m, a) != DIT_OK) {
        dit_train_activations_free(a);
        return NULL;
    }
    return a;
}

void dit_train_activations_free(dit_train_activations *a) {
    if (!a) return;
    float *bufs[] = {a->patches, a->x_in, a->x_mid, a->qkv, a->attn, a->attn_stats, a->proj, a->fc1, a->fc2, a->ln_mean,
                     a->ln_rstd, a->ada, a->temb, a->t_hidden, a->t_act, a->cond, a->cond_act, a->h, a->gelu,
                     a->d_res, a->d_h, a->d_tmp, a->d_attn, a->d_qkv, a->d_mlp, a->d_ada, a->d_cond,
                     a->d_small, a->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(a->labels);
    free(a->grad_blocks);
    dit_blocks_train_free(a);
    free(a);
}

// One score scratch serves both passes: the backward's two T x T blocks per thread cover the forward's one.
static dit_status ensure_scores(const dit_model *m, dit_train_activations *a) {
    const int threads = dit_max_threads();
    if (a->scores_threads < threads) {
        free(a->scores);
        a->scores_threads = 0;
        if (!(a->scores = floats(attention_backward_scratch_floats(m->seq_tokens, threads)))) return DIT_ERR;
        a->scores_threads = threads;
    }
    return DIT_OK;
}

typedef struct {
    const dit_model *model;
    dit_train_activations *acts;
} train_plan_owner;

// The saved tensors of block l, as slices of the per-layer arrays.
typedef struct {
    float *x_in, *x_mid, *x_out, *qkv, *attn, *attn_stats, *proj, *fc1, *fc2, *ada;
    float *mean1, *rstd1, *mean2, *rstd2;
} block_saved;

static block_saved saved_of(const dit_model *m, const dit_train_activations *a, int l) {
    const int64_t B = a->batch, T = m->seq_tokens, D = m->cfg.hidden_size, M = m->mlp_hidden;
    const int64_t BT = B * T;
    return (block_saved){
        .x_in = a->x_in + l * BT * D, .x_mid = a->x_mid + l * BT * D, .x_out = a->x_in + (l + 1) * BT * D,
        .qkv = a->qkv + l * BT * 3 * D, .attn = a->attn + l * BT * D,
        .attn_stats = a->attn_stats + l * BT * m->cfg.num_heads * 2, .proj = a->proj + l * BT * D,
        .fc1 = a->fc1 + l * BT * M, .fc2 = a->fc2 + l * BT * D, .ada = a->ada + l * B * 6 * D,
        .mean1 = a->ln_mean + 2 * l * BT, .rstd1 = a->ln_rstd + 2 * l * BT,
        .mean2 = a->ln_mean + (2 * l + 1) * BT, .rstd2 = a->ln_rstd + (2 * l + 1) * BT,
    };
}

// ---- forward ------------------------------------------------------------------------------------

// Training keeps every block's intermediates in its own slices; products run over the whole batch (training
// needs no batch invariance, and one big GEMM is faster than B small ones), so outputs agree with
// dit_model_forward to summation order.
dit_block_slots dit_train_block_slots(const dit_model *m, dit_train_activations *a, int l) {
    if (l == m->cfg.depth) {
        const int64_t BT = (int64_t)a->batch * m->seq_tokens;
        return (dit_block_slots){.x_in = a->x_in + l * BT * m->cfg.hidden_size};
    }
    block_saved s = saved_of(m, a, l);
    dit_block_slots slots = {.x_in = s.x_in, .x_mid = s.x_mid, .x_out = s.x_out, .qkv = s.qkv, .attn = s.attn,
                             .attn_stats = s.attn_stats,
                             .proj = s.proj, .fc2 = s.fc2, .fc1 = s.fc1, .mlp = a->gelu, .ada = s.ada,
                             .mean1 = s.mean1, .rstd1 = s.rstd1, .mean2 = s.mean2, .rstd2 = s.rstd2,
                             .x_cross = s.x_mid};
    if (m->cfg.block == DIT_BLOCK_CROSS_ATTENTION) {
        const int64_t B = a->batch, BT = B * m->seq_tokens, D = m->cfg.hidden_size;
        slots.x_cross = a->x_cross + l * BT * D;
        slots.cross_q = a->cross_q + l * BT * D;
        slots.cross_out = a->cross_out + l * BT * D;
        slots.cross_kv = a->cross_kv + l * B * 4 * D;
        slots.mean_cross = a->cross_mean + l * BT;
        slots.rstd_cross = a->cross_rstd + l * BT;
    }
    return slots;
}

static dit_block_slots train_slots(const dit_forward_plan *plan, int l) {
    const train_plan_owner *o = plan->owner;
    return dit_train_block_slots(o->model, o->acts, l);
}

dit_status dit_forward_train(dit_model *m, dit_train_activations *a, const float *x, const float *t,
                             const int *y, float *out) {
    const dit_config *c = &m->cfg;
    const int D = c->hidden_size, B = a->batch, L = c->depth;
    const int64_t BT = (int64_t)B * m->seq_tokens;
    for (int b = 0; b < B; b++)
        if (y[b] < 0 || y[b] >= m->label_rows)
            return dit_set_error("label %d of sample %d is out of range: this model has %d label rows", y[b], b,
                                 m->label_rows);
    DIT_TRY(ensure_scores(m, a));
    memcpy(a->labels, y, (size_t)B * sizeof(int));
    train_plan_owner owner = {.model = m, .acts = a};
    const dit_forward_plan plan = {
        .per_sample = 0, .keeps_activations = 1, .owner = &owner, .block = train_slots, .patches = a->patches, .temb = a->temb,
        .t_hidden = a->t_hidden, .t_act = a->t_act, .cond = a->cond, .cond_act = a->cond_act, .h = a->h,
        .scratch = a->d_tmp, .scores = a->scores, .final_ada = a->ada + (int64_t)L * B * 6 * D,
        .final_mean = a->ln_mean + 2 * L * BT, .final_rstd = a->ln_rstd + 2 * L * BT, .final_tokens = a->d_tmp,
        .context = a->context,
    };
    m->ops.pack_transposed = 1;   // the backward's W^T packs made with the forward's W packs
    const dit_status st = dit_forward_walk(m, &plan, x, t, y, B, out);
    m->ops.pack_transposed = 0;
    return st;
}

// ---- backward -----------------------------------------------------------------------------------

// The parameter pointers of m->p moved onto another buffer of the same layout.
static dit_params params_view(const dit_model *m, dit_train_activations *a, float *buf) {
#define MOVE(ptr) ((ptr) ? buf + ((ptr) - m->params) : NULL)   // NULL: a tensor this block design lacks
    const dit_params *p = &m->p;
    dit_params g = {
        .pos_embed = MOVE(p->pos_embed), .patch_w = MOVE(p->patch_w), .patch_b = MOVE(p->patch_b),
        .t_mlp0_w = MOVE(p->t_mlp0_w), .t_mlp0_b = MOVE(p->t_mlp0_b), .t_mlp2_w = MOVE(p->t_mlp2_w),
        .t_mlp2_b = MOVE(p->t_mlp2_b), .y_table = MOVE(p->y_table), .blocks = a->grad_blocks,
        .final_w = MOVE(p->final_w), .final_b = MOVE(p->final_b), .final_ada_w = MOVE(p->final_ada_w),
        .final_ada_b = MOVE(p->final_ada_b), .final_norm_w = MOVE(p->final_norm_w),
        .final_norm_b = MOVE(p->final_norm_b),
    };
    for (int l = 0; l < m->cfg.depth; l++) {
        const dit_block_params *bp = &p->blocks[l];
        a->grad_blocks[l] = (dit_block_params){
            .qkv_w = MOVE(bp->qkv_w), .qkv_b = MOVE(bp->qkv_b), .proj_w = MOVE(bp->proj_w),
            .proj_b = MOVE(bp->proj_b), .fc1_w = MOVE(bp->fc1_w), .fc1_b = MOVE(bp->fc1_b),
            .fc2_w = MOVE(bp->fc2_w), .fc2_b = MOVE(bp->fc2_b), .ada_w = MOVE(bp->ada_w), .ada_b = MOVE(bp->ada_b),
            .norm1_w = MOVE(bp->norm1_w), .norm1_b = MOVE(bp->norm1_b), .norm2_w = MOVE(bp->norm2_w),
            .norm2_b = MOVE(bp->norm2_b), .cross_norm_w = MOVE(bp->cross_norm_w),
            .cross_norm_b = MOVE(bp->cross_norm_b), .cross_q_w = MOVE(bp->cross_q_w), .cross_q_b = MOVE(bp->cross_q_b),
            .cross_kv_w = MOVE(bp->cross_kv_w), .cross_kv_b = MOVE(bp->cross_kv_b),
            .cross_proj_w = MOVE(bp->cross_proj_w), .cross_proj_b = MOVE(bp->cross_proj_b),
        };
    }
#undef MOVE
    return g;
}

static void add_into(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

// On entry a->d_res = dL/d(block output); on exit dL/d(block input). The adaLN gradient goes to a->d_cond.
static dit_status block_backward(dit_model *m, dit_train_activations *a, const dit_block_params *bp,
                           const dit_block_params *gp, int l) {
    const int B = a->batch, T = dit_config_tokens(&m->cfg), D = m->cfg.hidden_size, H = m->cfg.num_heads;
    const int BT = B * T, A = 6 * D;
    block_saved s = saved_of(m, a, l);
    const float *shift_msa = s.ada, *scale_msa = s.ada + D, *gate_msa = s.ada + 2 * D;
    const float *shift_mlp = s.ada + 3 * D, *scale_mlp = s.ada + 4 * D, *gate_mlp = s.ada + 5 * D;
    float *d_ada = a->d_ada;
    const ops_context *ops = &m->ops;
    dit_block_layers *bl = &m->layers.blocks[l];

    // x_out = x_mid + gate_mlp * (fc2(gelu(fc1(h2))) + b);  h2 = modulate(norm2(x_mid)). The bias gradient (the
    // column sums of d_tmp = gate * d_res) comes with the linear backward (in bf16, as it converts d_tmp).
    gated_residual_backward(a->d_tmp, NULL, d_ada + 5 * D, a->d_res, s.fc2, bp->fc2_b, gate_mlp, A, B, T, D);
    DIT_TRY(op_linear_backward_gelu(ops, &bl->fc2, a->d_mlp, gp->fc2_w, gp->fc2_b, a->d_tmp, s.fc1, a->gelu, BT));
    const modulated_rows h2 = {.x = s.x_mid, .mean = s.mean2, .rstd = s.rstd2, .shift = shift_mlp, .scale = scale_mlp,
                               .row_stride = A, .B = B, .T = T, .D = D};
    DIT_TRY(op_linear_backward_modulated(ops, &bl->fc1, a->d_h, gp->fc1_w, gp->fc1_b, a->d_mlp, &h2, a->h));
    op_layernorm_modulate_backward(ops, a->d_res, d_ada + 3 * D, d_ada + 4 * D, a->d_h, s.x_mid, s.mean2, s.rstd2,
                                scale_mlp, A, B, T, D);

    // x_mid = x_in + gate_msa * (proj(attention(qkv(h1))) + b);  h1 = modulate(norm1(x_in))
    gated_residual_backward(a->d_tmp, NULL, d_ada + 2 * D, a->d_res, s.proj, bp->proj_b, gate_msa, A, B, T, D);
    DIT_TRY(op_attention_out_backward(ops, &bl->proj, a->d_attn, gp->proj_w, gp->proj_b, a->d_tmp, s.attn, B, T, H));
    DIT_TRY(op_attention_backward(ops, a->d_qkv, a->d_attn, s.qkv, s.attn_stats, a->scores, B, T, D, H));
    const modulated_rows h1 = {.x = s.x_in, .mean = s.mean1, .rstd = s.rstd1, .shift = shift_msa, .scale = scale_msa,
                               .row_stride = A, .B = B, .T = T, .D = D};
    DIT_TRY(op_linear_backward_modulated(ops, &bl->qkv, a->d_h, gp->qkv_w, gp->qkv_b, a->d_qkv, &h1, a->h));
    op_layernorm_modulate_backward(ops, a->d_res, d_ada, d_ada + D, a->d_h, s.x_in, s.mean1, s.rstd1, scale_msa, A, B,
                                   T, D);

    // ada = SiLU(c) @ W^T + b
    DIT_TRY(op_linear_backward(ops, &bl->ada, a->d_small, gp->ada_w, gp->ada_b, d_ada, a->cond_act, B));
    add_into(a->d_cond, a->d_small, (int64_t)B * D);
    return DIT_OK;
}

dit_status dit_backward(dit_model *m, dit_train_activations *a, const float *dout, float *grads) {
    const dit_config *c = &m->cfg;
    const int T = dit_config_tokens(c), D = c->hidden_size, P = c->patch_size;
    const int S = c->input_size, OUT = dit_config_out_channels(c), B = a->batch, L = c->depth;
    const int64_t BT = (int64_t)B * T, BTs = (int64_t)B * m->seq_tokens;   // image tokens, the blocks' tokens
    DIT_TRY(ensure_scores(m, a));
    const dit_params *p = &m->p;
    dit_params g = params_view(m, a, grads);
    const ops_context *ops = &m->ops;
    dit_layers *Ls = &m->layers;

    // final layer
    const float *ada = a->ada + (int64_t)L * B * 6 * D, *x_final = a->x_in + L * BTs * D;
    const float *mean = a->ln_mean + 2 * L * BTs, *rstd = a->ln_rstd + 2 * L * BTs;
    unpatchify_backward(a->d_tmp, dout, B, OUT, S, P);
    if (dit_block_adaptive(c)) {   // its input is the modulated LayerNorm, recomputed (as the blocks' qkv and fc1)
        const modulated_rows h = {.x = x_final, .mean = mean, .rstd = rstd, .shift = ada, .scale = ada + D,
                                  .row_stride = 2 * D, .B = B, .T = T, .D = D};
        DIT_TRY(op_linear_backward_modulated(ops, &Ls->final, a->d_h, g.final_w, g.final_b, a->d_tmp, &h, a->h));
    } else {   // the plain final LayerNorm (dit_blocks.c) recomputed from the saved statistics
        const dit_forward_plan recompute = {.h = a->h};
        dit_plain_final_norm_forward(m, &recompute, x_final, B);
        DIT_TRY(op_linear_backward(ops, &Ls->final, a->d_h, g.final_w, g.final_b, a->d_tmp, a->h, (int)BT));
    }
    if (dit_block_adaptive(c)) {
        memset(a->d_res, 0, (size_t)BT * D * sizeof(float));
        op_layernorm_modulate_backward(ops, a->d_res, a->d_ada, a->d_ada + D, a->d_h, x_final, mean, rstd, ada + D,
                                       2 * D, B, T, D);
        DIT_TRY(op_linear_backward(ops, &Ls->final_ada, a->d_cond, g.final_ada_w, g.final_ada_b, a->d_ada,
                                   a->cond_act, B));
    } else {
        dit_plain_final_norm_backward(m, a, &g);
    }

    for (int l = L - 1; l >= 0; l--) {
        if (c->block == DIT_BLOCK_ADALN_ZERO) DIT_TRY(block_backward(m, a, &p->blocks[l], &g.blocks[l], l));
        else DIT_TRY(dit_ungated_block_backward(m, a, &p->blocks[l], &g.blocks[l], l));   // dit_blocks.c
    }
    // the plain blocks' conditioning tokens: d t_emb into a->d_cond (in-context: out of the stream's gradient)
    const float *d_label = dit_block_adaptive(c) ? a->d_cond : dit_condition_tokens_backward(m, a);

    // patch embedding (pos_embed is fixed; the input x needs no gradient)
    DIT_TRY(op_linear_backward(ops, &Ls->patch, NULL, g.patch_w, g.patch_b, a->d_res, a->patches, (int)BT));

    // conditioning: d c = SiLU'(c) * d SiLU(c); c = t_mlp2(SiLU(t_mlp0(temb))) + y_table[y]
    // (the plain blocks: d t_emb and d y_emb come from their tokens instead)
    if (dit_block_adaptive(c)) silu_backward(a->d_cond, a->d_cond, a->cond, (int64_t)B * D);
    for (int b = 0; b < B; b++) add_into(g.y_table + (int64_t)a->labels[b] * D, d_label + (int64_t)b * D, D);
    DIT_TRY(op_linear_backward(ops, &Ls->t_mlp2, a->d_small, g.t_mlp2_w, g.t_mlp2_b, a->d_cond, a->t_act, B));
    silu_backward(a->d_small, a->d_small, a->t_hidden, (int64_t)B * D);
    return op_linear_backward(ops, &Ls->t_mlp0, NULL, g.t_mlp0_w, g.t_mlp0_b, a->d_small, a->temb, B);
}

// The offsets in the parameter buffer of the weights the adaLN-Zero backward writes with op_linear_backward*
// (count: 5 + 5 per block); the other designs are not listed.
static int fresh_weight_offsets(const dit_model *m, int64_t *offsets) {
    const dit_params *p = &m->p;
    const float *w[] = {p->final_w, p->final_ada_w, p->patch_w, p->t_mlp0_w, p->t_mlp2_w};
    int n = 0;
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) offsets[n++] = w[i] - m->params;
    for (int l = 0; l < m->cfg.depth; l++) {
        const dit_block_params *b = &p->blocks[l];
        const float *bw[] = {b->qkv_w, b->proj_w, b->fc1_w, b->fc2_w, b->ada_w};
        for (size_t i = 0; i < sizeof bw / sizeof bw[0]; i++) offsets[n++] = bw[i] - m->params;
    }
    return n;
}

dit_status dit_backward_fresh(dit_model *m, dit_train_activations *a, const float *dout, float *grads) {
    const int listed = m->cfg.block == DIT_BLOCK_ADALN_ZERO;
    int64_t *offsets = listed ? dit_malloc((size_t)(5 + 5 * m->cfg.depth) * sizeof *offsets) : NULL;
    if (listed && !offsets) return DIT_ERR;
    const int n = listed ? fresh_weight_offsets(m, offsets) : 0;
    for (int k = 0; k < m->num_params; k++) {   // zeros where the backward adds (all of it unless listed)
        const param_entry *e = &m->table[k];
        int written = 0;
        for (int i = 0; i < n && !written; i++) written = offsets[i] == (int64_t)e->offset;
        if (!written) memset(grads + e->offset, 0, e->numel * sizeof(float));
    }
    free(offsets);
    m->ops.fresh_weight_grads = listed;
    const dit_status st = dit_backward(m, a, dout, grads);
    m->ops.fresh_weight_grads = 0;
    return st;
}

// ---- benchmark hook -----------------------------------------------------------------------------

double dit_train_step_seconds(dit_model *m, int batch, int iters) {
    const dit_config *c = &m->cfg;
    if (batch <= 0 || iters <= 0) return -1.0;
    const int64_t in = (int64_t)batch * c->in_channels * c->input_size * c->input_size;
    const int64_t out_n = (int64_t)batch * dit_config_out_channels(c) * c->input_size * c->input_size;
    float *x = floats(in), *t = floats(batch), *out = floats(out_n), *grads = dit_calloc(m->total_floats, sizeof(float));
    int *y = dit_malloc((size_t)batch * sizeof(int));
    dit_train_activations *a = x && t && out && grads && y ? dit_train_activations_create(m, batch) : NULL;
    if (!a) {
        free(x); free(t); free(out); free(grads); free(y);
        return -1.0;
    }
    uint32_t state = 12345;
    for (int64_t i = 0; i < in; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    for (int b = 0; b < batch; b++) t[b] = (float)((b * 397) % 1000), y[b] = b % c->num_classes;
    double best = -1.0;
    for (int it = 0; it <= iters; it++) {   // the first step warms up (page faults, thread pools)
        double start = now_seconds();
        if (dit_forward_train(m, a, x, t, y, out) != DIT_OK) break;
        if (dit_backward(m, a, out, grads) != DIT_OK) break;   // dL/dout = out: L = 0.5 |out|^2
        double step = now_seconds() - start;
        if (it > 0 && (best < 0 || step < best)) best = step;
    }
    dit_train_activations_free(a);
    free(x); free(t); free(out); free(grads); free(y);
    return best;
}
