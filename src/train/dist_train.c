// Data-parallel training (docs/distributed.md): the global batch is cut into equal shards, one per rank; every
// rank draws the same global data order and noise (all keyed by the batch slot, trainer.c), computes its
// shard's gradient of the whole batch's loss, and the gradients are summed in rank order by dist_allreduce, so
// every rank takes the same AdamW and EMA step. One process with the same number of shards sums them in the
// same order and gets the same bits (the equivalence test in tests/test_dist.c).
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "dist/dist.h"
#include "models/dit_model.h"
#include "train/train.h"

dit_status trainer_set_shards(trainer *tr, dist_comm *comm, int shards) {
    const int size = dist_size(comm), rank = dist_rank(comm), B = tr->hp.batch;
    if (shards <= 0) shards = size;
    if (size > 1 && shards != size)
        return dit_set_error("--grad-shards %d: over %d ranks the batch is cut into one shard per rank (%d)", shards,
                             size, size);
    if (B % shards)
        return dit_set_error("--batch %d is not divisible by %d %s: each takes batch/%d samples (give a multiple "
                             "of %d)", B, shards, size > 1 ? "ranks" : "shards", shards, shards);
    // Every rank starts from rank 0's state: weights, EMA, moments, step and data cursor. (They would agree
    // anyway, from the same seed or checkpoint; the broadcast makes it so whatever each rank read.)
    if (size > 1) {
        int64_t shape[6] = {(int64_t)tr->model->total_floats, B, tr->step, tr->epoch, tr->position, tr->target_steps};
        int64_t root[6];
        memcpy(root, shape, sizeof root);
        if (dist_broadcast(comm, root, sizeof root, 0)) return DIT_ERR;
        if (root[0] != shape[0] || root[1] != shape[1])
            return dit_set_error("rank %d has a model of %lld floats and batch %lld, rank 0 %lld floats and batch %lld",
                                 rank, (long long)shape[0], (long long)shape[1], (long long)root[0], (long long)root[1]);
        tr->step = root[2], tr->epoch = root[3], tr->position = root[4], tr->target_steps = root[5];
        float *state[4] = {tr->model->params, tr->ema, tr->adam_m, tr->adam_v};
        for (int k = 0; k < 4; k++)
            if (dist_broadcast(comm, state[k], tr->model->total_floats * sizeof(float), 0)) return DIT_ERR;
        dit_model_weights_changed(tr->model);   // packed bf16 copies follow rank 0's weights
    }
    tr->comm = comm;
    tr->shards = shards;
    tr->shard_lo = size > 1 ? rank : 0;
    tr->shard_hi = size > 1 ? rank + 1 : shards;
    if (shards > 1) {
        // the activations of one shard only: the forward and backward run shard by shard
        dit_train_activations_free(tr->acts);
        if (!(tr->acts = dit_train_activations_create(tr->model, B / shards))) return DIT_ERR;
        if (tr->shard_hi - tr->shard_lo > 1 && !tr->shard_grads &&
            !(tr->shard_grads = dit_calloc(tr->model->total_floats, sizeof(float))))
            return DIT_ERR;
    }
    return DIT_OK;
}

dit_status trainer_reduce_shards(trainer *tr) {
    dist_comm *c = tr->comm;
    tr->comm_seconds = 0;
    if (dist_size(c) <= 1) return DIT_OK;
    const double t0 = now_seconds();
    const int Bs = tr->hp.batch / tr->shards;
    if (dist_allreduce(c, tr->grads, tr->model->total_floats, DIST_F32, DIST_SUM)) goto fail;
    // the per-sample loss terms of every shard, for the log (each rank's shard sits at its slots)
    if (dist_allgather(c, tr->mse + (size_t)tr->shard_lo * Bs, (size_t)Bs * sizeof(float), tr->mse) ||
        dist_allgather(c, tr->vb + (size_t)tr->shard_lo * Bs, (size_t)Bs * sizeof(float), tr->vb))
        goto fail;
    tr->comm_seconds = now_seconds() - t0;
    return DIT_OK;
fail:
    dit_prefix_error("step %lld", (long long)tr->step + 1);
    return DIT_ERR;
}
