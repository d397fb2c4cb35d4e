// The optimizer side of DiT's train.py (reference.md §3.1): torch.optim.AdamW (decoupled weight decay,
// bias correction, float32 in torch 1.13's single-tensor operation order), optional global-norm clipping
// (clip_grad_norm_), linear warmup, the EMA of update_ema, and the reference weight initialisation (§1.9).
// Every buffer mirrors the parameter layout of src/models/dit_model.h.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "train/train.h"

void train_hparams_default(train_hparams *hp) {
    memset(hp, 0, sizeof *hp);
    hp->lr = 1e-4;
    hp->beta1 = 0.9;
    hp->beta2 = 0.999;
    hp->eps = 1e-8;
    hp->ema_decay = 0.9999;
    hp->batch = 32;
    hp->label_dropout = 0.1;
    hp->hflip = 1;
    // the parameters of recipe options that are off by default (the selectors stay 0: DiT's recipe)
    hp->logit_std = 1.0;
    hp->snr_gamma = 5.0;
    hp->ema_power = 6.94;   // EDM2: sigma_rel 0.10
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

// The block designs of reference.md §1.13 follow the same rules, plus: LayerNorm affines (the plain
// blocks' norm*.weight) start at 1 (PyTorch's default), and adaLN's modulation inside the blocks is an
// ordinary xavier-initialised linear (zero only in adaLN-Zero, whose name it gives); the final layer's
// adaLN and linear are zero in every design.
void train_init_weights(dit_model *m, uint64_t seed) {
    const int zero_modulation = m->cfg.block == DIT_BLOCK_ADALN_ZERO;
    for (int k = 0; k < m->num_params; k++) {
        const param_entry *e = &m->table[k];
        float *p = m->params + e->offset;
        if (!strcmp(e->name, "pos_embed")) continue;   // the fixed sin-cos table
        const int modulation = strstr(e->name, "adaLN_modulation") != NULL;
        const int zero = ends_with(e->name, ".bias") || !strncmp(e->name, "final_layer.linear", 18) ||
                         (modulation && (zero_modulation || !strncmp(e->name, "final_layer.", 12)));
        if (e->ndim == 1 && !zero) {   // a LayerNorm weight
            for (size_t i = 0; i < e->numel; i++) p[i] = 1.0f;
        } else if (zero) {
            memset(p, 0, e->numel * sizeof(float));
        } else if (!strcmp(e->name, "y_embedder.embedding_table.weight") || !strcmp(e->name, "t_embedder.mlp.0.weight") ||
                   !strcmp(e->name, "t_embedder.mlp.2.weight")) {
            rng_normal_fill(p, (int64_t)e->numel, seed, (uint32_t)k, 0, RNG_STREAM_INIT);
            for (size_t i = 0; i < e->numel; i++) p[i] *= 0.02f;
        } else {
            // xavier_uniform over the [out, in] view (the patch conv as [D, C p p]): bound sqrt(6 / (in + out))
            const double fan_out = (double)e->shape[0], fan_in = (double)e->numel / fan_out;
            const double bound = sqrt(6.0 / (fan_in + fan_out));
            for (size_t i = 0; i < e->numel; i++)
                p[i] = (float)((2.0 * train_rng_uniform(seed, (uint32_t)i, (uint32_t)k, 1, RNG_STREAM_INIT) - 1.0) * bound);
        }
    }
}

// Gradient norms sum the squares in chunks of NORM_CHUNK floats (the same chunks whatever the threads).
enum { NORM_CHUNK = 1 << 16 };

static size_t norm_chunks(size_t n) { return (n + NORM_CHUNK - 1) / NORM_CHUNK; }

// Squares of g[0..n) summed in double, in vector lanes.
static double sum_of_squares(const float *g, size_t n) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return s;
}

double train_grad_norm(const float *g, size_t n) {
    // Fixed chunks summed in parallel, then the chunks in order: the same bits whatever the thread count (the
    // clipping coefficient comes from this). Without memory for the chunk sums, one chunk: slower, the same
    // kind of order.
    const size_t chunks = norm_chunks(n);
    double *part = chunks > 1 ? malloc(chunks * sizeof *part) : NULL;
    if (!part) return sqrt(sum_of_squares(g, n));
#pragma omp parallel for schedule(guided)
    for (size_t c = 0; c < chunks; c++)
        part[c] = sum_of_squares(g + c * NORM_CHUNK, c + 1 < chunks ? NORM_CHUNK : n - c * NORM_CHUNK);
    double s = 0;
    for (size_t c = 0; c < chunks; c++) s += part[c];
    free(part);
    return sqrt(s);
}

// AdamW on n floats; with ema, the EMA of each updated value in the same pass (the same operations as
// train_ema_update after the step, so the same bits, with one pass over the parameters fewer); with squares,
// the sum of the squares of each NORM_CHUNK of the gradient into squares[chunk] on the way (a pass over the
// gradient fewer than train_grad_norm before the step).
static void adamw_range(float *params, const float *grads, float *adam_m, float *adam_v, size_t n,
                        const train_hparams *hp, double lr, int64_t step, float *ema, double ema_decay,
                        double *squares) {
    // torch 1.13 _single_tensor_adamw, scalars as Python computes them (double), cast to float32 by the kernels
    const float decay = (float)(1.0 - lr * hp->weight_decay);
    const float b1 = (float)hp->beta1, one_minus_b1 = (float)(1.0 - hp->beta1);
    const float b2 = (float)hp->beta2, one_minus_b2 = (float)(1.0 - hp->beta2);
    const double bias_correction1 = 1.0 - pow(hp->beta1, (double)step);
    const double bias_correction2 = 1.0 - pow(hp->beta2, (double)step);
    const float neg_step_size = (float)(-(lr / bias_correction1));
    const float bc2_sqrt = (float)sqrt(bias_correction2), eps = (float)hp->eps;
    const float ema_keep = (float)ema_decay, ema_take = (float)(1.0 - ema_decay);
    const size_t chunks = norm_chunks(n);
#pragma omp parallel for schedule(guided)
    for (size_t c = 0; c < chunks; c++) {
        const size_t lo = c * NORM_CHUNK, hi = n - lo < NORM_CHUNK ? n : lo + NORM_CHUNK;
        double sq = 0;
#pragma omp simd reduction(+ : sq)
        for (size_t i = lo; i < hi; i++) {
            const float g = grads[i];
            float p = params[i] * decay;                            // param.mul_(1 - lr * wd)
            const float m = adam_m[i] * b1 + g * one_minus_b1;      // exp_avg.mul_(b1).add_(g, alpha=1-b1)
            const float v = adam_v[i] * b2 + one_minus_b2 * g * g;  // exp_avg_sq.mul_(b2).addcmul_(g, g, value=1-b2)
            const float denom = sqrtf(v) / bc2_sqrt + eps;          // (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
            p = p + neg_step_size * m / denom;                      // param.addcdiv_(exp_avg, denom, value=-step_size)
            params[i] = p, adam_m[i] = m, adam_v[i] = v;
            if (ema) ema[i] = ema[i] * ema_keep + p * ema_take;     // ema.mul_(decay).add_(param, alpha=1 - decay)
            sq += (double)g * g;
        }
        if (squares) squares[c] = sq;
    }
}

void train_adamw_update(float *params, const float *grads, float *adam_m, float *adam_v, size_t n,
                        const train_hparams *hp, double lr, int64_t step) {
    adamw_range(params, grads, adam_m, adam_v, n, hp, lr, step, NULL, 0.0, NULL);
}

double train_adamw_ema_step(const dit_model *m, float *params, const float *grads, float *adam_m, float *adam_v,
                            const train_hparams *hp, double lr, int64_t step, float *ema, double ema_decay) {
    size_t chunks = 0;
    for (int k = 0; k < m->num_params; k++) chunks += norm_chunks(m->table[k].numel);
    double *squares = malloc((chunks ? chunks : 1) * sizeof *squares);
    size_t at = 0;
    for (int k = 0; k < m->num_params; k++) {
        const param_entry *e = &m->table[k];
        double *mine = squares ? squares + at : NULL;
        at += norm_chunks(e->numel);
        // pos_embed has requires_grad=False: torch's AdamW skips it (grad None), so weight decay never touches
        // it; update_ema still averages it (its gradient, never written, is zeros: no part of the norm)
        if (!strcmp(e->name, "pos_embed")) {
            train_ema_update(ema + e->offset, params + e->offset, e->numel, ema_decay);
            for (size_t c = 0; mine && c < norm_chunks(e->numel); c++) mine[c] = 0.0;
        } else {
            adamw_range(params + e->offset, grads + e->offset, adam_m + e->offset, adam_v + e->offset, e->numel, hp,
                        lr, step, ema + e->offset, ema_decay, mine);
        }
    }
    if (!squares) return -1.0;
    double sum = 0;   // the chunks in order: the same bits whatever the thread count
    for (size_t c = 0; c < chunks; c++) sum += squares[c];
    free(squares);
    return sqrt(sum);
}

void train_ema_update(float *ema, const float *params, size_t n, double decay_d) {
    // update_ema: ema.mul_(decay).add_(param, alpha=1 - decay)
    const float decay = (float)decay_d, one_minus = (float)(1.0 - decay_d);
#pragma omp parallel for schedule(guided)
    for (size_t i = 0; i < n; i++) ema[i] = ema[i] * decay + params[i] * one_minus;
}
