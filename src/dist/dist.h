// Communication between processes (docs/distributed.md): rank, size, broadcast, all-reduce, gather, barrier.
// One interface, one back-end per transport: "single" (one process, no communication) and "mpi" (Open MPI,
// point-to-point messages with deadlines); an NCCL back-end slots in beside them as llm.c does it (the MPI
// back-end bootstraps it: rank 0's ncclUniqueId goes out by dist_broadcast, then ncclCommInitRank).
// Reductions are deterministic: every element is summed in rank order 0, 1, ..., N-1, left to right, so a
// single process that sums N partial results the same way gets the same bits (src/train/dist_train.c).
#ifndef DIT_DIST_H
#define DIT_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"

typedef enum { DIST_F32 = 0, DIST_BF16 } dist_dtype;   // bf16: uint16 bit patterns, summed in float32
typedef enum { DIST_SUM = 0, DIST_MEAN } dist_op;

typedef struct dist_comm dist_comm;

// What a back-end implements. Every call is collective: all ranks make the same calls in the same order.
// Errors return DIT_ERR with a message naming the rank that did not answer (see dist_comm.timeout_s).
typedef struct dist_backend {
    const char *name;
    dit_status (*broadcast)(dist_comm *c, void *buf, size_t bytes, int root);
    // buf: count elements, replaced by the rank-order sum (or mean) on every rank
    dit_status (*allreduce)(dist_comm *c, void *buf, size_t count, dist_dtype type, dist_op op);
    // rank r sends bytes[r] bytes; recv (root only / every rank) gets them one after another in rank order
    dit_status (*gatherv)(dist_comm *c, const void *send, void *recv, const size_t *bytes, int root);
    dit_status (*allgatherv)(dist_comm *c, const void *send, void *recv, const size_t *bytes);
    dit_status (*barrier)(dist_comm *c);
    void (*abort)(dist_comm *c, int code);   // end every rank now (does not return)
    void (*finalize)(dist_comm *c);
} dist_backend;

struct dist_comm {
    const dist_backend *ops;
    int rank, size;
    double timeout_s;       // a collective that waits longer for a peer fails (DIT_DIST_TIMEOUT, default 300 s)
    double comm_seconds;    // time spent inside collectives so far (the training log reports it per step)
    uint64_t bytes_sent;    // payload bytes this rank sent so far
    void *impl;
};

// The process-wide communicator. dist_init picks the back-end: "mpi" when this build has MPI and the process
// was started by a launcher (mpirun/mpiexec, srun with PMI/PMIx) with a world of more than one rank, else
// "single". A launcher world of N > 1 without MPI in the build is an error (every process would do all the
// work). DIT_DIST=single forces one process. Safe to call more than once; dist_world() without dist_init()
// is the single-process communicator.
dit_status dist_init(int *argc, char ***argv);
dist_comm *dist_world(void);
void dist_finalize(void);
// 1 when this build can run over MPI.
int dist_built_with_mpi(void);

static inline int dist_rank(const dist_comm *c) { return c ? c->rank : 0; }
static inline int dist_size(const dist_comm *c) { return c ? c->size : 1; }
static inline int dist_is_root(const dist_comm *c) { return dist_rank(c) == 0; }

dit_status dist_broadcast(dist_comm *c, void *buf, size_t bytes, int root);
dit_status dist_allreduce(dist_comm *c, void *buf, size_t count, dist_dtype type, dist_op op);
// Equal parts: every rank sends `bytes`; recv holds size * bytes in rank order (root only for dist_gather).
dit_status dist_gather(dist_comm *c, const void *send, size_t bytes, void *recv, int root);
dit_status dist_allgather(dist_comm *c, const void *send, size_t bytes, void *recv);
dit_status dist_barrier(dist_comm *c);
// Print "dit: rank R: message" (the last error when msg is NULL) on stderr and end every rank with `code`.
// The one call of the library that ends the process, on purpose: a rank that gives up alone would leave the
// others blocked in a collective forever, and MPI_Abort (which ends the process itself) is the only way to
// stop them all. The library never calls it on its own; a program (the CLI) calls it when it decides to.
void dist_abort(dist_comm *c, int code, const char *msg);

// The rows [lo, hi) of `total` that rank `rank` of `size` owns: contiguous, in rank order, sizes differing
// by at most one (the first total % size ranks take one more).
void dist_share(int64_t total, int rank, int size, int64_t *lo, int64_t *hi);
// Rows sharded by dist_share: buf holds `total` rows of row_bytes; each rank has filled its own rows; after
// the call root's buf holds all of them (other ranks' buf unchanged).
dit_status dist_gather_rows(dist_comm *c, void *buf, size_t row_bytes, int64_t total, int root);
// The same from a buffer of this rank's rows only (mine: its hi - lo rows) into root's `all` (total rows).
dit_status dist_gather_rows_to(dist_comm *c, const void *mine, void *all, size_t row_bytes, int64_t total, int root);

// The reduction every back-end uses, on one chunk: out[k] = parts[0][k] + parts[1][k] + ... left to right
// (float32; bf16 parts are widened, summed in float32 and rounded to nearest even once), divided by n for MEAN.
void dist_reduce_parts(void *out, const void *const *parts, int n, size_t count, dist_dtype type, dist_op op);
// bf16 <-> float32 (round to nearest even; NaN stays NaN).
uint16_t dist_f32_to_bf16(float f);
float dist_bf16_to_f32(uint16_t h);

// Back-ends (dist_single.c, dist_mpi.c).
extern const dist_backend dist_single_backend;
#ifdef DIT_HAVE_MPI
extern const dist_backend dist_mpi_backend;
// MPI_Init_thread and the world communicator; NULL with an error when MPI cannot start.
dist_comm *dist_mpi_create(int *argc, char ***argv);
#endif

#endif
