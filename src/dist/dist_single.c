// The single-process back-end: a world of one rank, where every collective is a copy at most. dist.c answers
// size-1 calls before they reach a back-end; these entries keep the table complete for direct callers.
#include <string.h>

#include "dist/dist.h"

static dit_status single_broadcast(dist_comm *c, void *buf, size_t bytes, int root) {
    (void)c, (void)buf, (void)bytes, (void)root;
    return DIT_OK;
}

static dit_status single_allreduce(dist_comm *c, void *buf, size_t count, dist_dtype type, dist_op op) {
    (void)c, (void)buf, (void)count, (void)type, (void)op;
    return DIT_OK;
}

static dit_status single_gatherv(dist_comm *c, const void *send, void *recv, const size_t *bytes, int root) {
    (void)c, (void)root;
    if (bytes[0] && recv != send) memmove(recv, send, bytes[0]);
    return DIT_OK;
}

static dit_status single_allgatherv(dist_comm *c, const void *send, void *recv, const size_t *bytes) {
    return single_gatherv(c, send, recv, bytes, 0);
}

static dit_status single_barrier(dist_comm *c) {
    (void)c;
    return DIT_OK;
}

const dist_backend dist_single_backend = {
    .name = "single",
    .broadcast = single_broadcast,
    .allreduce = single_allreduce,
    .gatherv = single_gatherv,
    .allgatherv = single_allgatherv,
    .barrier = single_barrier,
    .abort = NULL,
    .finalize = NULL,
};
