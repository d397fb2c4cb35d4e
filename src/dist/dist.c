// The communicator front end: picks the back-end (single process or MPI) from the build and the launcher's
// environment, times every collective, and holds what all back-ends share: the rank-order reduction of one
// chunk, bf16 rounding, and the row shares of sampling and evaluation. See dist.h and docs/distributed.md.
#include "base/bf16_bits.h"
#include "base/clock.h"
#include "dist/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/error.h"

static dist_comm single_world = {.ops = &dist_single_backend, .rank = 0, .size = 1, .timeout_s = 300};
static dist_comm *world;

int dist_built_with_mpi(void) {
#ifdef DIT_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

// The world size a launcher announced in the environment (Open MPI's mpirun, MPICH/PMI, Slurm's srun with
// PMIx: a task of a step, PMIX_RANK set), 0 when none.
static int launcher_size(void) {
    static const char *const names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    const char *step_tasks = getenv("SLURM_STEP_NUM_TASKS");
    if (getenv("PMIX_RANK") && step_tasks && atoi(step_tasks) > 0) return atoi(step_tasks);
    return 0;
}

dit_status dist_init(int *argc, char ***argv) {
    if (world) return DIT_OK;
    const char *timeout = getenv("DIT_DIST_TIMEOUT");
    double timeout_s = 300;
    if (timeout && *timeout) {
        char *end;
        timeout_s = strtod(timeout, &end);
        if (*end || !(timeout_s > 0)) return dit_set_error("DIT_DIST_TIMEOUT=%s: expected seconds > 0", timeout);
    }
    single_world.timeout_s = timeout_s;
    const char *force = getenv("DIT_DIST");
    const int size = launcher_size();
    if ((force && !strcmp(force, "single")) || size <= 1) {
        world = &single_world;
        return DIT_OK;
    }
    if (force && *force && strcmp(force, "mpi"))
        return dit_set_error("DIT_DIST=%s: expected single or mpi", force);
#ifdef DIT_HAVE_MPI
    dist_comm *c = dist_mpi_create(argc, argv);
    if (!c) return DIT_ERR;
    c->timeout_s = timeout_s;
    world = c;
    return DIT_OK;
#else
    (void)argc, (void)argv;
    return dit_set_error("started as one of %d processes by a launcher (mpirun/srun), but this dit was built without "
                         "MPI: install libopenmpi-dev (scripts/setup.sh) and rebuild", size);
#endif
}

dist_comm *dist_world(void) { return world ? world : &single_world; }

void dist_finalize(void) {
    if (world && world->ops->finalize) world->ops->finalize(world);
    world = NULL;
}

// Every public collective: single-rank shortcuts, then the back-end, timed.
#define TIMED(c, call)                           \
    do {                                         \
        const double t0_ = now_seconds();        \
        dit_status st_ = (call);                 \
        (c)->comm_seconds += now_seconds() - t0_; \
        return st_;                              \
    } while (0)

dit_status dist_broadcast(dist_comm *c, void *buf, size_t bytes, int root) {
    if (!c || c->size == 1 || !bytes) return DIT_OK;
    if (root < 0 || root >= c->size) return dit_set_error("broadcast: root %d outside 0..%d", root, c->size - 1);
    TIMED(c, c->ops->broadcast(c, buf, bytes, root));
}

dit_status dist_allreduce(dist_comm *c, void *buf, size_t count, dist_dtype type, dist_op op) {
    if (!c || c->size == 1 || !count) return DIT_OK;   // the sum (and mean) of one part is the part
    TIMED(c, c->ops->allreduce(c, buf, count, type, op));
}

static size_t *equal_sizes(const dist_comm *c, size_t bytes) {
    size_t *sizes = dit_malloc((size_t)c->size * sizeof *sizes);
    for (int r = 0; sizes && r < c->size; r++) sizes[r] = bytes;
    return sizes;
}

dit_status dist_gather(dist_comm *c, const void *send, size_t bytes, void *recv, int root) {
    if (!c || c->size == 1) {
        if (bytes && recv != send) memmove(recv, send, bytes);
        return DIT_OK;
    }
    size_t *sizes = equal_sizes(c, bytes);
    if (!sizes) return DIT_ERR;
    const double t0 = now_seconds();
    dit_status st = c->ops->gatherv(c, send, recv, sizes, root);
    c->comm_seconds += now_seconds() - t0;
    free(sizes);
    return st;
}

dit_status dist_allgather(dist_comm *c, const void *send, size_t bytes, void *recv) {
    if (!c || c->size == 1) {
        if (bytes && recv != send) memmove(recv, send, bytes);
        return DIT_OK;
    }
    size_t *sizes = equal_sizes(c, bytes);
    if (!sizes) return DIT_ERR;
    const double t0 = now_seconds();
    dit_status st = c->ops->allgatherv(c, send, recv, sizes);
    c->comm_seconds += now_seconds() - t0;
    free(sizes);
    return st;
}

dit_status dist_barrier(dist_comm *c) {
    if (!c || c->size == 1) return DIT_OK;
    TIMED(c, c->ops->barrier(c));
}

void dist_abort(dist_comm *c, int code, const char *msg) {
    if (!c) c = dist_world();
    if (c->size > 1) fprintf(stderr, "dit: rank %d: %s\n", c->rank, msg ? msg : dit_last_error());
    else fprintf(stderr, "dit: %s\n", msg ? msg : dit_last_error());
    fflush(stderr);
    if (c->ops->abort) c->ops->abort(c, code);   // MPI_Abort: ends every rank, this one included
    exit(code);   // single process (or an MPI that returned from MPI_Abort): the caller asked to end (dist.h)
}

void dist_share(int64_t total, int rank, int size, int64_t *lo, int64_t *hi) {
    const int64_t base = total / size, extra = total % size;
    *lo = rank * base + (rank < extra ? rank : extra);
    *hi = *lo + base + (rank < extra ? 1 : 0);
}

dit_status dist_gather_rows_to(dist_comm *c, const void *mine, void *all, size_t row_bytes, int64_t total, int root) {
    int64_t lo, hi;
    dist_share(total, dist_rank(c), dist_size(c), &lo, &hi);
    if (!c || c->size == 1) {
        if (total && (const char *)all + (size_t)lo * row_bytes != (const char *)mine)
            memmove((char *)all + (size_t)lo * row_bytes, mine, (size_t)(hi - lo) * row_bytes);
        return DIT_OK;
    }
    size_t *sizes = dit_malloc((size_t)c->size * sizeof *sizes);
    if (!sizes) return DIT_ERR;
    for (int r = 0; r < c->size; r++) {
        int64_t rlo, rhi;
        dist_share(total, r, c->size, &rlo, &rhi);
        sizes[r] = (size_t)(rhi - rlo) * row_bytes;
    }
    const double t0 = now_seconds();
    dit_status st = c->ops->gatherv(c, mine, all, sizes, root);
    c->comm_seconds += now_seconds() - t0;
    free(sizes);
    return st;
}

dit_status dist_gather_rows(dist_comm *c, void *buf, size_t row_bytes, int64_t total, int root) {
    if (!c || c->size == 1) return DIT_OK;
    int64_t lo, hi;
    dist_share(total, c->rank, c->size, &lo, &hi);
    return dist_gather_rows_to(c, (const char *)buf + (size_t)lo * row_bytes, buf, row_bytes, total, root);
}

uint16_t dist_f32_to_bf16(float f) { return bf16_bits_from_float(f); }

float dist_bf16_to_f32(uint16_t h) { return float_from_bf16_bits(h); }

void dist_reduce_parts(void *out, const void *const *parts, int n, size_t count, dist_dtype type, dist_op op) {
    if (type == DIST_F32) {
        float *o = out;
        const float *first = parts[0];
        if (o != first) memmove(o, first, count * sizeof(float));
        for (int p = 1; p < n; p++) {
            const float *x = parts[p];
            for (size_t k = 0; k < count; k++) o[k] += x[k];
        }
        if (op == DIST_MEAN)
            for (size_t k = 0; k < count; k++) o[k] /= (float)n;
        return;
    }
    uint16_t *o = out;
    for (size_t k = 0; k < count; k++) {
        float s = dist_bf16_to_f32(((const uint16_t *)parts[0])[k]);
        for (int p = 1; p < n; p++) s += dist_bf16_to_f32(((const uint16_t *)parts[p])[k]);
        if (op == DIST_MEAN) s /= (float)n;
        o[k] = dist_f32_to_bf16(s);
    }
}
