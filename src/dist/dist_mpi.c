// The MPI back-end (Open MPI; any MPI-3 library): every collective is built from point-to-point messages
// (MPI_Isend/MPI_Irecv) that are waited for with a deadline, so a rank that stops answering is named in a
// one-line error instead of hanging the job, and the all-reduce sums in a fixed rank order (bit-reproducible,
// unlike MPI_Allreduce whose order is the library's choice). The all-reduce is a reduce-scatter then an
// all-gather per bucket: each rank sends and receives 2 (N-1)/N of the buffer, as a ring all-reduce.
#ifdef DIT_HAVE_MPI
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/error.h"
#include "dist/dist.h"

#define PIECE_BYTES ((size_t)1 << 28)    // one MPI message carries at most 256 MiB (counts are int)
#define BUCKET_BYTES ((size_t)32 << 20)  // the all-reduce works through the buffer 32 MiB at a time

enum { TAG_BROADCAST = 0x4401, TAG_SCATTER, TAG_GATHER_BACK, TAG_GATHER, TAG_ALLGATHER, TAG_BARRIER };

typedef struct {
    MPI_Comm comm;
} mpi_impl;

static MPI_Comm comm_of(const dist_comm *c) { return ((const mpi_impl *)c->impl)->comm; }

// Outstanding requests and the peer of each (to name who did not answer).
typedef struct {
    MPI_Request *req;
    int *peer, *index;
    int n, cap;
} request_list;

static dit_status mpi_error(int code, const char *what) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return dit_set_error("%s: MPI error: %.*s", what, len, text);
}

// Room for one more request, made before the request is posted (a posted request must never be lost).
static dit_status list_reserve(request_list *l) {
    if (l->n < l->cap) return DIT_OK;
    const int cap = l->cap ? 2 * l->cap : 16;
    MPI_Request *req = dit_realloc(l->req, cap * sizeof *l->req);
    if (req) l->req = req;
    int *peer = req ? dit_realloc(l->peer, cap * sizeof *l->peer) : NULL;
    if (peer) l->peer = peer;
    int *index = peer ? dit_realloc(l->index, cap * sizeof *l->index) : NULL;
    if (!index) return DIT_ERR;
    l->index = index;
    l->cap = cap;
    return DIT_OK;
}

static void list_push(request_list *l, MPI_Request r, int peer) {
    DIT_CHECK(l->n < l->cap);
    l->req[l->n] = r, l->peer[l->n] = peer, l->n++;
}

static void list_free(request_list *l) {
    free(l->req), free(l->peer), free(l->index);
    memset(l, 0, sizeof *l);
}

// Post bytes as messages of at most PIECE_BYTES (both sides split the same way; MPI keeps their order).
static dit_status post(dist_comm *c, request_list *l, int is_send, void *buf, size_t bytes, int peer, int tag) {
    size_t off = 0;
    do {
        const size_t n = bytes - off < PIECE_BYTES ? bytes - off : PIECE_BYTES;
        MPI_Request r;
        DIT_TRY(list_reserve(l));
        int rc = is_send ? MPI_Isend((char *)buf + off, (int)n, MPI_BYTE, peer, tag, comm_of(c), &r)
                         : MPI_Irecv((char *)buf + off, (int)n, MPI_BYTE, peer, tag, comm_of(c), &r);
        if (rc != MPI_SUCCESS) return mpi_error(rc, is_send ? "send" : "receive");
        list_push(l, r, peer);
        if (is_send) c->bytes_sent += n;
        off += n;
    } while (off < bytes);
    return DIT_OK;
}

// Wait for every request, polling; past the deadline name the peers whose messages are still outstanding.
static dit_status wait_all(dist_comm *c, request_list *l, const char *what) {
    const double deadline = now_seconds() + c->timeout_s;
    int remaining = l->n;
    long idle = 0;
    while (remaining > 0) {
        int done = 0;
        int rc = MPI_Testsome(l->n, l->req, &done, l->index, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_error(rc, what);
        if (done == MPI_UNDEFINED) break;
        remaining -= done;
        if (done > 0) {
            idle = 0;
            continue;
        }
        if (++idle > 2000) {   // spin briefly (latency), then poll every 50 us (leave the core to others)
            struct timespec pause = {0, 50000};
            nanosleep(&pause, NULL);
            if (idle % 256 == 0 && now_seconds() > deadline) {
                char peers[256] = "";
                size_t len = 0;
                int named = 0;
                for (int i = 0; i < l->n && len < sizeof peers - 16; i++) {
                    if (l->req[i] == MPI_REQUEST_NULL) continue;
                    int seen = 0;
                    for (int j = 0; j < i; j++) seen |= l->req[j] != MPI_REQUEST_NULL && l->peer[j] == l->peer[i];
                    if (seen) continue;
                    len += snprintf(peers + len, sizeof peers - len, "%s%d", named++ ? ", " : "", l->peer[i]);
                }
                return dit_set_error("no answer from rank%s %s within %g s (%s); stopping the job (DIT_DIST_TIMEOUT "
                                     "sets the limit)", named > 1 ? "s" : "", peers, c->timeout_s, what);
            }
        }
    }
    l->n = 0;
    return DIT_OK;
}

static dit_status mpi_broadcast(dist_comm *c, void *buf, size_t bytes, int root) {
    request_list l = {0};
    dit_status st = DIT_OK;
    if (c->rank == root) {
        for (int p = 0; p < c->size && !st; p++)
            if (p != root) st = post(c, &l, 1, buf, bytes, p, TAG_BROADCAST);
    } else {
        st = post(c, &l, 0, buf, bytes, root, TAG_BROADCAST);
    }
    if (!st) st = wait_all(c, &l, "broadcast");
    list_free(&l);
    return st;
}

static dit_status mpi_allreduce(dist_comm *c, void *buf, size_t count, dist_dtype type, dist_op op) {
    const size_t esize = type == DIST_BF16 ? 2 : 4, bucket = BUCKET_BYTES / esize, N = (size_t)c->size;
    const size_t first = count < bucket ? count : bucket, chunk_max = (first + N - 1) / N;
    char *parts_buf = dit_malloc(N * chunk_max * esize), *sum = dit_malloc(chunk_max * esize);
    const void **parts = dit_malloc(N * sizeof *parts);
    request_list l = {0};
    dit_status st = parts_buf && sum && parts ? DIT_OK : DIT_ERR;
    for (size_t off = 0; off < count && !st; off += bucket) {
        const size_t n = count - off < bucket ? count - off : bucket;
        char *base = (char *)buf + off * esize;
        int64_t lo, hi;
        dist_share((int64_t)n, c->rank, c->size, &lo, &hi);
        const size_t mine = (size_t)(hi - lo) * esize;
        // reduce-scatter: rank p owns chunk p of the bucket and sums everybody's copy of it in rank order
        for (int p = 0; p < c->size && !st; p++) {
            if (p == c->rank) continue;
            int64_t plo, phi;
            dist_share((int64_t)n, p, c->size, &plo, &phi);
            st = post(c, &l, 0, parts_buf + (size_t)p * chunk_max * esize, mine, p, TAG_SCATTER);
            if (!st) st = post(c, &l, 1, base + (size_t)plo * esize, (size_t)(phi - plo) * esize, p, TAG_SCATTER);
        }
        if (!st) st = wait_all(c, &l, "all-reduce");
        if (st) break;
        for (int p = 0; p < c->size; p++)
            parts[p] = p == c->rank ? base + (size_t)lo * esize : parts_buf + (size_t)p * chunk_max * esize;
        dist_reduce_parts(sum, parts, c->size, (size_t)(hi - lo), type, op);
        memcpy(base + (size_t)lo * esize, sum, mine);
        // all-gather: every owner sends its summed chunk back to everyone
        for (int p = 0; p < c->size && !st; p++) {
            if (p == c->rank) continue;
            int64_t plo, phi;
            dist_share((int64_t)n, p, c->size, &plo, &phi);
            st = post(c, &l, 0, base + (size_t)plo * esize, (size_t)(phi - plo) * esize, p, TAG_GATHER_BACK);
            if (!st) st = post(c, &l, 1, base + (size_t)lo * esize, mine, p, TAG_GATHER_BACK);
        }
        if (!st) st = wait_all(c, &l, "all-reduce");
    }
    list_free(&l);
    free(parts), free(sum), free(parts_buf);
    return st;
}

static dit_status mpi_gatherv_tag(dist_comm *c, const void *send, void *recv, const size_t *bytes, int root, int tag,
                                  const char *what) {
    request_list l = {0};
    dit_status st = DIT_OK;
    size_t off = 0, my_off = 0;
    for (int p = 0; p < c->size && !st; p++) {
        if (p == c->rank) my_off = off;
        else if (root < 0 || c->rank == root) st = post(c, &l, 0, (char *)recv + off, bytes[p], p, tag);
        if (root < 0 ? p != c->rank : (c->rank != root && p == root))
            if (!st) st = post(c, &l, 1, (void *)send, bytes[c->rank], p, tag);
        off += bytes[p];
    }
    if (!st && (root < 0 || c->rank == root) && bytes[c->rank] && (char *)recv + my_off != (const char *)send)
        memmove((char *)recv + my_off, send, bytes[c->rank]);
    if (!st) st = wait_all(c, &l, what);
    list_free(&l);
    return st;
}

static dit_status mpi_gatherv(dist_comm *c, const void *send, void *recv, const size_t *bytes, int root) {
    return mpi_gatherv_tag(c, send, recv, bytes, root, TAG_GATHER, "gather");
}

static dit_status mpi_allgatherv(dist_comm *c, const void *send, void *recv, const size_t *bytes) {
    return mpi_gatherv_tag(c, send, recv, bytes, -1, TAG_ALLGATHER, "all-gather");
}

static dit_status mpi_barrier(dist_comm *c) {
    request_list l = {0};
    dit_status st = DIT_OK;
    char none = 0, sink[1];
    for (int p = 0; p < c->size && !st; p++) {
        if (p == c->rank) continue;
        st = post(c, &l, 0, sink, 0, p, TAG_BARRIER);
        if (!st) st = post(c, &l, 1, &none, 0, p, TAG_BARRIER);
    }
    if (!st) st = wait_all(c, &l, "barrier");
    list_free(&l);
    return st;
}

static void mpi_abort(dist_comm *c, int code) {
    signal(SIGTERM, SIG_DFL);   // this rank ends the job: the launcher's SIGTERM back to it needs no line
    MPI_Abort(comm_of(c), code ? code : 1);
}

static void mpi_finalize(dist_comm *c) {
    mpi_impl *m = c->impl;
    MPI_Comm_free(&m->comm);
    MPI_Finalize();
    free(m);
    free(c);
}

const dist_backend dist_mpi_backend = {
    .name = "mpi",
    .broadcast = mpi_broadcast,
    .allreduce = mpi_allreduce,
    .gatherv = mpi_gatherv,
    .allgatherv = mpi_allgatherv,
    .barrier = mpi_barrier,
    .abort = mpi_abort,
    .finalize = mpi_finalize,
};

// The launcher ends the other ranks with SIGTERM when one dies: say so in one line (async-signal-safe).
// SIGTERM's default action ends the process anyway; the handler only adds the line, and it is installed only
// by dist_mpi_create, i.e. when the program asked to run as an MPI rank (it is no library failure path).
static char sigterm_line[160];
static size_t sigterm_len;
static void on_sigterm(int sig) {
    (void)sig;
    ssize_t ignored = write(STDERR_FILENO, sigterm_line, sigterm_len);
    (void)ignored;
    _exit(143);
}

dist_comm *dist_mpi_create(int *argc, char ***argv) {
    int provided = 0, rc;
    if ((rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS) {
        mpi_error(rc, "MPI_Init_thread");
        return NULL;
    }
    mpi_impl *m = dit_calloc(1, sizeof *m);
    dist_comm *c = m ? dit_calloc(1, sizeof *c) : NULL;
    if (!c) {
        free(m);
        MPI_Finalize();
        return NULL;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    c->ops = &dist_mpi_backend;
    c->impl = m;
    MPI_Comm_rank(m->comm, &c->rank);
    MPI_Comm_size(m->comm, &c->size);
    sigterm_len = (size_t)snprintf(sigterm_line, sizeof sigterm_line,
                                   "dit: rank %d: stopped by the launcher (another rank failed, or the job was "
                                   "cancelled)\n", c->rank);
    if (sigterm_len >= sizeof sigterm_line) sigterm_len = sizeof sigterm_line - 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);
    return c;
}
#else
typedef int dist_mpi_not_built;   // this build has no MPI: dist.c uses the single-process back-end
#endif
