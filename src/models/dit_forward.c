// The DiT forward pass (reference.md §1.1), walking the layers in the order the paper draws them:
// patchify + pos_embed, c = t_emb + y_emb, N adaLN-Zero blocks, final layer, unpatchify (the other block
// designs of §1.13 take their own turns in dit_blocks.c). One walk serves
// inference (buffers reused in place) and training (every intermediate kept, dit_backward.c): a plan says
// where each intermediate goes.
// Classifier-free guidance exactly as the reference forward_with_cfg (§1.10).
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/threads.h"
#include "models/dit_model.h"
#include "ops/ops.h"

static int imax(int a, int b) { return a > b ? a : b; }

// Size the arena for B samples; grows only, so a sampler's steady state allocates nothing. Out of memory
// leaves the arena empty (capacity 0) and the model usable with a smaller batch.
static dit_status ensure_activations(dit_model *m, int B) {
    dit_activations *a = &m->acts;
    const dit_config *c = &m->cfg;
    const int threads = dit_max_threads();
    const int64_t T = m->seq_tokens, D = c->hidden_size, M = m->mlp_hidden;   // T + 2 in-context
    if (a->capacity < B) {
        const int P = c->patch_size;
        const int64_t widest = imax(imax(c->in_channels * P * P, P * P * dit_config_out_channels(c)), (int)D);
        free(a->x); free(a->h); free(a->qkv); free(a->attn); free(a->mlp); free(a->tmp);
        free(a->cond); free(a->temb); free(a->tmid); free(a->ada);
        a->capacity = 0;
        a->x = dit_malloc(B * T * D * sizeof(float));
        a->h = dit_malloc(B * T * D * sizeof(float));
        a->qkv = dit_malloc(B * T * 3 * D * sizeof(float));
        a->attn = dit_malloc(B * T * D * sizeof(float));
        a->mlp = dit_malloc(B * T * M * sizeof(float));
        a->tmp = dit_malloc(B * T * widest * sizeof(float));
        a->cond = dit_malloc(B * D * sizeof(float));
        a->temb = dit_malloc(B * 256 * sizeof(float));
        a->tmid = dit_malloc(B * D * sizeof(float));
        a->ada = dit_malloc(B * 6 * D * sizeof(float));
        free(a->context); free(a->cross_kv);
        a->context = dit_block_adaptive(c) ? NULL : dit_malloc(B * 2 * D * sizeof(float));
        a->cross_kv = c->block == DIT_BLOCK_CROSS_ATTENTION ? dit_malloc(B * 4 * D * sizeof(float)) : NULL;
        if (!a->x || !a->h || !a->qkv || !a->attn || !a->mlp || !a->tmp || !a->cond || !a->temb || !a->tmid ||
            !a->ada || (!dit_block_adaptive(c) && !a->context) ||
            (c->block == DIT_BLOCK_CROSS_ATTENTION && !a->cross_kv)) {
            dit_activations_free(m);
            return DIT_ERR;
        }
        a->capacity = B;
    }
    if (a->scores_threads < threads) {
        free(a->scores);
        a->scores_threads = 0;
        if (!(a->scores = dit_malloc(attention_scratch_floats((int)T, threads) * sizeof(float)))) return DIT_ERR;
        a->scores_threads = threads;
    }
    return DIT_OK;
}

// Batch invariance: a sample's output must not depend on which other samples share its batch (so a seed
// gives the same images whatever --batch). In fp32, OpenBLAS picks kernels, and with them summation orders,
// by matrix size, so inference runs one product per sample with a fixed shape (group_rows = T token rows, or
// 1 row of c); the bf16 kernels are row-independent and take the whole batch at once. Training takes whole
// batches in both precisions (plan->per_sample = 0).

// DiTBlock: x_mid = x_in + gate_msa * attn(modulate(norm1(x_in)));
//           x_out = x_mid + gate_mlp * mlp(modulate(norm2(x_mid))).
static dit_status block_forward(const dit_model *m, dit_block_layers *bl, const dit_forward_plan *plan, int l, int B) {
    const ops_context *ops = &m->ops;
    const int T = dit_config_tokens(&m->cfg), D = m->cfg.hidden_size, H = m->cfg.num_heads;
    const int BT = B * T, A = 6 * D, rows = plan->per_sample ? T : 0, one = plan->per_sample ? 1 : 0;
    const dit_block_slots s = plan->block(plan, l);
    // ada (B, 6D) = SiLU(c) @ W^T + b, chunks: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
    DIT_TRY(op_linear(ops, &bl->ada, s.ada, plan->cond_act, B, one, NULL));
    const float *shift_msa = s.ada, *scale_msa = s.ada + D, *gate_msa = s.ada + 2 * D;
    const float *shift_mlp = s.ada + 3 * D, *scale_mlp = s.ada + 4 * D, *gate_mlp = s.ada + 5 * D;

    op_operand h;   // modulate(norm1(x_in)): plan->h, or its bf16 copy on the bf16 path
    DIT_TRY(op_layernorm_modulate_operand(ops, &h, plan->h, s.mean1, s.rstd1, s.x_in, shift_msa, scale_msa, A, B, T, D));
    // (BT, 3D), in the form the attention reads (bf16 on the bf16 path); training keeps it for the backward
    DIT_TRY(op_qkv(ops, &bl->qkv, s.qkv, &h, B, T, H, rows, plan->keeps_activations));
    op_operand attn = op_floats(s.attn);   // (BT, D): training keeps s.attn; inference may hold only a bf16 copy
    if (plan->keeps_activations) DIT_TRY(op_attention(ops, s.attn, s.qkv, s.attn_stats, plan->scores, B, T, D, H));
    else DIT_TRY(op_attention_operand(ops, &attn, s.attn, s.qkv, plan->scores, B, T, D, H));
    const linear_epilogue msa = {.kind = LINEAR_GATED_RESIDUAL, .gate = gate_msa, .gate_stride = A, .gate_rows = T,
                                 .residual = s.x_in, .product = s.proj, .scratch = plan->scratch};
    DIT_TRY(op_linear_from(ops, &bl->proj, s.x_mid, &attn, BT, rows, &msa));     // x_mid = x_in + gate_msa * proj(attn)

    DIT_TRY(op_layernorm_modulate_operand(ops, &h, plan->h, s.mean2, s.rstd2, s.x_mid, shift_mlp, scale_mlp, A, B, T, D));
    const linear_epilogue mlp = {.kind = LINEAR_GATED_RESIDUAL, .gate = gate_mlp, .gate_stride = A, .gate_rows = T,
                                 .residual = s.x_mid, .product = s.fc2, .scratch = plan->scratch};
    // x_out = x_mid + gate_mlp * fc2(gelu(fc1(h))); s.mlp (BT, M) holds the GELU output where the precision needs it
    return op_mlp(ops, &bl->fc1, &bl->fc2, s.x_out, s.mlp, &h, BT, rows, s.fc1, &mlp);
}

static dit_status check_labels(const dit_model *m, const int *y, int batch) {
    for (int b = 0; b < batch; b++)
        if (y[b] < 0 || y[b] >= m->label_rows)
            return dit_set_error("label %d of sample %d is out of range: this model has %d classes%s", y[b], b,
                                 m->cfg.num_classes, m->label_rows > m->cfg.num_classes ? " (+1 null class)" : "");
    return DIT_OK;
}

dit_status dit_forward_walk(dit_model *m, const dit_forward_plan *plan, const float *x, const float *t, const int *y,
                            int batch, float *out) {
    const dit_config *c = &m->cfg;
    const int T = dit_config_tokens(c), D = c->hidden_size, P = c->patch_size, C = c->in_channels;
    const int S = c->input_size, OUT = dit_config_out_channels(c), B = batch;
    const int rows = plan->per_sample ? T : 0, one = plan->per_sample ? 1 : 0;
    if (batch <= 0) return dit_set_error("forward: batch must be positive, got %d", batch);
    if (check_labels(m, y, batch) != DIT_OK) return DIT_ERR;
    const dit_params *p = &m->p;
    dit_layers *L = &m->layers;
    const ops_context *ops = &m->ops;

    // tokens (B, T, D) = patchify(x) @ W^T + b + pos_embed
    float *x0 = plan->block(plan, 0).x_in;
    patchify_forward(plan->patches, x, B, C, S, P);
    DIT_TRY(op_linear(ops, &L->patch, x0, plan->patches, B * T, rows, NULL));
    #pragma omp parallel for collapse(2) schedule(guided)
    for (int b = 0; b < B; b++)
        for (int tok = 0; tok < T; tok++) {
            float *row = x0 + ((int64_t)b * T + tok) * D;
            const float *pos = p->pos_embed + (int64_t)tok * D;
            for (int d = 0; d < D; d++) row[d] += pos[d];
        }

    // c (B, D) = mlp(timestep_embedding(t)) + y_table[y]; every adaLN then reads SiLU(c)
    timestep_embedding_forward(plan->temb, t, B, 256);
    DIT_TRY(op_linear(ops, &L->t_mlp0, plan->t_hidden, plan->temb, B, one, NULL));
    silu_forward(plan->t_act, plan->t_hidden, (int64_t)B * D);
    DIT_TRY(op_linear(ops, &L->t_mlp2, plan->cond, plan->t_act, B, one, NULL));
    if (!dit_block_adaptive(c)) dit_condition_tokens_forward(m, plan, y, B);   // t_emb, y_emb as tokens
    for (int b = 0; b < B; b++) {
        const float *emb = p->y_table + (int64_t)y[b] * D;
        for (int d = 0; d < D; d++) plan->cond[(int64_t)b * D + d] += emb[d];
    }
    silu_forward(plan->cond_act, plan->cond, (int64_t)B * D);

    for (int l = 0; l < c->depth; l++) {
        if (c->block == DIT_BLOCK_ADALN_ZERO) DIT_TRY(block_forward(m, &L->blocks[l], plan, l, B));
        else DIT_TRY(dit_ungated_block_forward(m, &L->blocks[l], plan, l, B));   // the other designs, dit_blocks.c
    }

    // final layer: modulate(norm_final(x), shift, scale) @ W^T + b, then unpatchify to (B, OUT, S, S)
    const float *x_final = plan->block(plan, c->depth).x_in;
    if (dit_block_adaptive(c)) {
        DIT_TRY(op_linear(ops, &L->final_ada, plan->final_ada, plan->cond_act, B, one, NULL));
        op_layernorm_modulate(ops, plan->h, plan->final_mean, plan->final_rstd, x_final, plan->final_ada,
                              plan->final_ada + D, 2 * D, B, T, D);
    } else {
        dit_plain_final_norm_forward(m, plan, x_final, B);   // LN(x) * w + b over the image tokens
    }
    DIT_TRY(op_linear(ops, &L->final, plan->final_tokens, plan->h, B * T, rows, NULL));
    unpatchify_forward(out, plan->final_tokens, B, OUT, S, P);
    return DIT_OK;
}

// Inference: every block works in place on one residual stream and reuses the same buffers.
static dit_block_slots inference_slots(const dit_forward_plan *plan, int l) {
    const dit_activations *a = plan->owner;
    (void)l;
    return (dit_block_slots){.x_in = a->x, .x_mid = a->x, .x_out = a->x, .qkv = a->qkv, .attn = a->attn,
                             .mlp = a->mlp, .ada = a->ada,
                             // cross-attention: queries and output in the buffers self-attention is done with
                             .x_cross = a->x, .cross_q = a->qkv, .cross_out = a->attn, .cross_kv = a->cross_kv};
}

dit_status dit_model_forward(dit_model *m, const float *x, const float *t, const int *y, int batch, float *out) {
    if (batch <= 0) return dit_set_error("forward: batch must be positive, got %d", batch);
    DIT_TRY(ensure_activations(m, batch));
    dit_activations *a = &m->acts;
    const dit_forward_plan plan = {
        .per_sample = 1, .owner = a, .block = inference_slots, .patches = a->tmp, .temb = a->temb,
        .t_hidden = a->tmid, .t_act = a->tmid, .cond = a->cond, .cond_act = a->cond, .h = a->h, .scratch = a->tmp,
        .scores = a->scores, .final_ada = a->ada, .final_tokens = a->tmp, .context = a->context,
    };
    return dit_forward_walk(m, &plan, x, t, y, batch, out);
}

dit_status dit_model_forward_cfg(dit_model *m, const float *x, const float *t, const int *y, int batch,
                                 float cfg_scale, int guide_all_channels, float *out) {
    return dit_model_forward_cfg_interval(m, x, t, y, batch, cfg_scale, guide_all_channels, -INFINITY, INFINITY, out);
}

static int in_interval(float t, float lo, float hi) { return t >= lo && t <= hi; }

dit_status dit_model_forward_cfg_interval(dit_model *m, const float *x, const float *t, const int *y, int batch,
                                          float cfg_scale, int guide_all_channels, float t_lo, float t_hi,
                                          float *out) {
    const dit_config *c = &m->cfg;
    if (m->label_rows <= c->num_classes)
        return dit_set_error("classifier-free guidance needs a null class, but this model was built without "
                             "label dropout (class_dropout_prob = 0)");
    if (batch <= 0) return dit_set_error("forward: batch must be positive, got %d", batch);
    if (check_labels(m, y, batch) != DIT_OK) return DIT_ERR;
    int any_guided = 0;
    for (int b = 0; b < batch; b++) any_guided |= in_interval(t[b], t_lo, t_hi);
    if (!any_guided) return dit_model_forward(m, x, t, y, batch, out);   // the unconditional half is not needed
    const int S = c->input_size, C = c->in_channels, OUT = dit_config_out_channels(c), B = batch;
    const int64_t sample_in = (int64_t)C * S * S, sample_out = (int64_t)OUT * S * S, plane = (int64_t)S * S;
    // One forward over [x; x] with labels [y; null], as the reference builds its doubled batch. The doubled
    // buffers live with the activations and only grow, so a sampler's steady state allocates nothing.
    dit_activations *acts = &m->acts;
    if (acts->cfg_capacity < B) {
        free(acts->cfg_x); free(acts->cfg_t); free(acts->cfg_y); free(acts->cfg_out);
        acts->cfg_capacity = 0;
        acts->cfg_x = dit_malloc(2 * B * sample_in * sizeof(float));
        acts->cfg_t = dit_malloc(2 * B * sizeof(float));
        acts->cfg_y = dit_malloc(2 * B * sizeof(int));
        acts->cfg_out = dit_malloc(2 * B * sample_out * sizeof(float));
        if (!acts->cfg_x || !acts->cfg_t || !acts->cfg_y || !acts->cfg_out) {
            dit_activations_free(m);
            return DIT_ERR;
        }
        acts->cfg_capacity = B;
    }
    float *x2 = acts->cfg_x, *t2 = acts->cfg_t, *out2 = acts->cfg_out;
    int *y2 = acts->cfg_y;
    memcpy(x2, x, B * sample_in * sizeof(float));
    memcpy(x2 + B * sample_in, x, B * sample_in * sizeof(float));
    for (int b = 0; b < B; b++) {
        t2[b] = t2[B + b] = t[b];
        y2[b] = y[b];
        y2[B + b] = c->num_classes;
    }
    dit_status st = dit_model_forward(m, x2, t2, y2, 2 * B, out2);
    if (st == DIT_OK) {
        // Official: guide output channels 0..2 (model_out[:, :3], a leftover from pixel-space GLIDE, kept for
        // exact FID): for 4-channel latents eps 0..2, channel 3 and the variance channels come from the
        // conditional half; for a 1-channel learned-sigma model that is eps AND its variance channel.
        // guide_all_channels: every eps channel and nothing else.
        const int guided = guide_all_channels ? C : (OUT < 3 ? OUT : 3);
        memcpy(out, out2, B * sample_out * sizeof(float));
        for (int b = 0; b < B; b++) {
            if (!in_interval(t[b], t_lo, t_hi)) continue;   // outside the interval: the conditional output
            for (int ch = 0; ch < guided; ch++) {
                const float *cond = out2 + b * sample_out + ch * plane;
                const float *uncond = out2 + (B + b) * sample_out + ch * plane;
                float *dst = out + b * sample_out + ch * plane;
                for (int64_t i = 0; i < plane; i++) dst[i] = uncond[i] + cfg_scale * (cond[i] - uncond[i]);
            }
        }
    }
    return st;
}
