// One training step of DiT's train.py (reference.md §3.1): a shuffled batch, uniform t, label dropout,
// q_sample, forward, the hybrid loss, backward, optional clipping, AdamW, EMA; or, with the recipe options
// (recipe.c), logit-normal t, min-SNR weights, the flow-matching objective (diffusion/flow.h), lr and EMA
// schedules. Every random draw is a pure function of (seed, step, batch slot) or (seed, epoch, index), so the
// step and the data cursor are the whole random state (docs/training.md "Determinism").
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "diffusion/flow.h"
#include "train/train.h"

static float *floats(size_t n) { return dit_calloc(n ? n : 1, sizeof(float)); }

trainer *trainer_wrap(dit_model *m, const train_hparams *hp, uint64_t seed, const train_data *data) {
    const dit_config *c = &m->cfg;
    if (hp->batch < 1) {
        dit_set_error("batch size %d: expected at least 1", hp->batch);
        return NULL;
    }
    if (hp->label_dropout > 0 && m->label_rows <= c->num_classes) {
        dit_set_error("label dropout %g needs a null class: the model has class_dropout_prob 0", hp->label_dropout);
        return NULL;
    }
    if (data) {
        if (data->channels != c->in_channels || data->size != c->input_size) {
            dit_set_error("%s: samples are %d x %d x %d, the model takes %d x %d x %d", data->source, data->channels,
                          data->size, data->size, c->in_channels, c->input_size, c->input_size);
            return NULL;
        }
        if (data->num_classes > c->num_classes) {
            dit_set_error("%s: %d classes, the model has %d", data->source, data->num_classes, c->num_classes);
            return NULL;
        }
        if (data->count < hp->batch) {
            dit_set_error("%s: %d samples, fewer than one batch of %d", data->source, data->count, hp->batch);
            return NULL;
        }
    }
    if (hp->objective == DIT_OBJECTIVE_V_FLOW && hp->loss_weight != LOSS_UNWEIGHTED) {
        dit_set_error("loss weight %s is for the eps objective; for v-flow the time density is the weighting "
                      "(--time-sampling logit-normal)", train_loss_weight_names[hp->loss_weight]);
        return NULL;
    }
    trainer *tr = dit_calloc(1, sizeof *tr);
    if (!tr) return NULL;
    tr->model = m;
    m->objective = hp->objective;   // recorded in checkpoints and the models made from them
    tr->hp = *hp;
    tr->seed = seed;
    tr->data = data;
    diffusion_options dopt = {.learn_sigma = c->learn_sigma};
    if (diffusion_init(&tr->diff, &dopt)) {
        free(tr);
        return NULL;
    }
    const size_t n = m->total_floats;
    tr->grads = floats(n), tr->ema = floats(n), tr->adam_m = floats(n), tr->adam_v = floats(n);
    const int B = hp->batch, S = c->input_size, C = c->in_channels, OC = dit_config_out_channels(c);
    const size_t per = (size_t)C * S * S;
    tr->acts = dit_train_activations_create(m, B);
    tr->x0 = floats(B * per), tr->noise = floats(B * per), tr->x_t = floats(B * per), tr->t_float = floats(B);
    tr->out = floats((size_t)B * OC * S * S), tr->dout = floats((size_t)B * OC * S * S);
    tr->t = dit_calloc(B, sizeof(int)), tr->y = dit_calloc(B, sizeof(int)), tr->index = dit_calloc(B, sizeof(int));
    tr->mse = floats(B), tr->vb = floats(B), tr->t_flow = floats(B), tr->weight = floats(B);
    tr->steps_per_epoch = data ? data->count / B : 0;
    tr->perm = data ? dit_calloc(data->count, sizeof(int)) : NULL;
    tr->perm_epoch = -1;
    if (!tr->grads || !tr->ema || !tr->adam_m || !tr->adam_v || !tr->acts || !tr->x0 || !tr->noise || !tr->x_t ||
        !tr->t_float || !tr->out || !tr->dout || !tr->t || !tr->y || !tr->index || !tr->mse || !tr->vb ||
        (data && !tr->perm)) {
        tr->model = NULL;   // the caller's: trainer_wrap takes it only on success
        trainer_free(tr);
        return NULL;
    }
    memcpy(tr->ema, m->params, n * sizeof(float));   // update_ema(ema, model, decay=0)
    return tr;
}

trainer *trainer_create(const dit_config *cfg, const train_hparams *hp, uint64_t seed, const train_data *data) {
    if (dit_config_validate(cfg)) return NULL;
    dit_model *m = dit_model_create(cfg);
    if (!m) return NULL;
    train_init_weights(m, seed);
    trainer *tr = trainer_wrap(m, hp, seed, data);
    if (!tr) dit_model_free(m);
    return tr;
}

void trainer_free(trainer *tr) {
    if (!tr) return;
    dit_train_activations_free(tr->acts);
    diffusion_free(&tr->diff);
    dit_model_free(tr->model);
    free(tr->grads), free(tr->ema), free(tr->adam_m), free(tr->adam_v);
    free(tr->x0), free(tr->noise), free(tr->x_t), free(tr->t_float), free(tr->out), free(tr->dout);
    free(tr->t), free(tr->y), free(tr->index), free(tr->mse), free(tr->vb), free(tr->perm), free(tr->shard_grads);
    free(tr->t_flow), free(tr->weight);
    free(tr);
}

dit_status trainer_step(trainer *tr, train_stats *st) {
    const train_data *data = tr->data;
    if (!data) return dit_set_error("trainer_step: no data");
    dit_model *m = tr->model;
    const dit_config *c = &m->cfg;
    const int B = tr->hp.batch, S = c->input_size, C = c->in_channels, HW = S * S;
    const size_t per = (size_t)C * HW;
    const uint32_t step = (uint32_t)tr->step;
    if (tr->position + B > data->count) tr->epoch++, tr->position = 0;   // drop_last
    if (tr->perm_epoch != tr->epoch) {
        train_data_permutation(data->count, tr->seed, tr->epoch, tr->perm);
        tr->perm_epoch = tr->epoch;
    }
    // Shards of the batch (1 unless data parallel): each is assembled, run forward and backward on its own and
    // its gradient added in shard order; the other ranks' shards arrive through trainer_reduce_shards.
    const int sharded = tr->shards > 1, Bs = B / (sharded ? tr->shards : 1);
    const int flow = tr->hp.objective == DIT_OBJECTIVE_V_FLOW, weighted = tr->hp.loss_weight == LOSS_MIN_SNR;
    for (int s = sharded ? tr->shard_lo : 0, s_end = sharded ? tr->shard_hi : 1; s < s_end; s++) {
        const int lo = s * Bs;
        // the batch: samples, flips, labels with dropout, timesteps, noise (slot b of the whole batch at j)
        for (int b = lo, j = 0; b < lo + Bs; b++, j++) {
            const int i = tr->perm[tr->position + b];
            const int flip = (data->kind == DATA_LATENT_CACHE || tr->hp.hflip) &&
                             train_rng_below(tr->seed, 0, step, (uint32_t)b, RNG_STREAM_FLIP, 2);
            tr->index[b] = i;
            if (train_data_get(data, i, flip, tr->x0 + j * per)) return DIT_ERR;
            tr->y[j] = data->labels[i];
            if (tr->hp.label_dropout > 0 &&
                train_rng_uniform(tr->seed, 0, step, (uint32_t)b, RNG_STREAM_LABEL_DROP) < tr->hp.label_dropout)
                tr->y[j] = c->num_classes;   // the null class row
            if (flow) {   // t in [0, 1): 0 data, 1 noise; the network sees 1000 t
                tr->t_flow[j] = (float)train_sample_time(&tr->hp, tr->seed, step, (uint32_t)b);
                tr->t_float[j] = FLOW_TIME_SCALE * tr->t_flow[j];
            } else {
                tr->t[j] = train_sample_timestep(&tr->hp, tr->seed, step, (uint32_t)b, tr->diff.num_timesteps);
                tr->t_float[j] = (float)tr->diff.timestep_map[tr->t[j]];
                if (weighted) tr->weight[j] = (float)train_min_snr_weight(&tr->diff, tr->t[j], tr->hp.snr_gamma);
            }
            rng_normal_fill(tr->noise + j * per, (int64_t)per, tr->seed, (uint32_t)b, step, RNG_STREAM_NOISE);
        }
        double loss;
        if (flow) {
            flow_interpolate(tr->t_flow, tr->x0, tr->noise, Bs, (int64_t)per, tr->x_t);
            if (dit_forward_train(m, tr->acts, tr->x_t, tr->t_float, tr->y, tr->out)) return DIT_ERR;
            loss = flow_loss(tr->x0, tr->noise, tr->out, NULL, Bs, B, C, HW, dit_config_out_channels(c), tr->mse + lo,
                             tr->dout);
            for (int j = 0; j < Bs; j++) tr->vb[lo + j] = 0;
        } else {
            train_q_sample(&tr->diff, tr->t, tr->x0, tr->noise, Bs, (int64_t)per, tr->x_t);
            if (dit_forward_train(m, tr->acts, tr->x_t, tr->t_float, tr->y, tr->out)) return DIT_ERR;
            loss = train_loss_part_weighted(&tr->diff, tr->t, tr->x0, tr->x_t, tr->noise, tr->out,
                                            weighted ? tr->weight : NULL, Bs, B, C, HW, tr->mse + lo, tr->vb + lo,
                                            tr->dout);
        }
        if (!isfinite(loss)) return dit_set_error("step %lld: the loss is %g (diverged; lower --lr or set --grad-clip)",
                                                  (long long)tr->step + 1, loss);
        float *g = sharded && s > tr->shard_lo ? tr->shard_grads : tr->grads;
        if (dit_backward_fresh(m, tr->acts, tr->dout, g)) return DIT_ERR;
        if (g != tr->grads)
            for (size_t k = 0; k < m->total_floats; k++) tr->grads[k] += g[k];
    }
    if (sharded && trainer_reduce_shards(tr)) return DIT_ERR;
    double loss = 0;   // mean_b (mse_b + vb_b) over the whole batch, in slot order
    for (int b = 0; b < B; b++) loss += (double)tr->mse[b] + (double)tr->vb[b];
    loss /= B;
    // the norm before the step only when it clips the gradient; otherwise (for the log) from the update's pass
    double norm = tr->hp.grad_clip > 0 ? train_grad_norm(tr->grads, m->total_floats) : 0.0;
    if (tr->hp.grad_clip > 0) {
        // clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1, multiplied in float32
        const double coef = tr->hp.grad_clip / (norm + 1e-6);
        if (coef < 1.0) {
            const float f = (float)coef;
            for (size_t i = 0; i < m->total_floats; i++) tr->grads[i] *= f;
        }
    }
    const double lr = train_lr_at(&tr->hp, tr->step), ema_decay = train_ema_decay_at(&tr->hp, tr->step);
    tr->step++;
    const double summed = train_adamw_ema_step(m, m->params, tr->grads, tr->adam_m, tr->adam_v, &tr->hp, lr, tr->step,
                                               tr->ema, ema_decay);
    // (the update leaves the gradient as it was: without memory for the pass's chunk sums, a pass of its own)
    if (tr->hp.grad_clip <= 0) norm = summed >= 0 ? summed : train_grad_norm(tr->grads, m->total_floats);
    dit_model_weights_changed(m);   // packed bf16 copies follow the new weights
    tr->position += B;
    if (st) {
        double mse = 0, vb = 0;
        for (int b = 0; b < B; b++) mse += tr->mse[b], vb += tr->vb[b];
        st->loss = loss, st->mse = mse / B, st->vb = vb / B, st->grad_norm = norm, st->lr = lr;
    }
    return DIT_OK;
}

dit_model *trainer_ema_model(const trainer *tr) {
    dit_model *e = dit_model_create(&tr->model->cfg);
    if (!e) return NULL;
    dit_model_set_precision(e, tr->model->precision);   // the grids sample as the run computes
    e->objective = tr->model->objective;
    memcpy(e->params, tr->ema, tr->model->total_floats * sizeof(float));
    if (tr->model->class_names &&
        dit_model_set_class_names(e, (const char *const *)tr->model->class_names, tr->model->cfg.num_classes)) {
        dit_model_free(e);
        return NULL;
    }
    return e;
}
