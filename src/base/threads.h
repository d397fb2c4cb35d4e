// Thread setup shared by the CLI and the benchmarks: one count for OpenMP and OpenBLAS together, and the
// count OpenMP will use (1 without OpenMP), which sizes per-thread scratch buffers.
#ifndef DIT_BASE_THREADS_H
#define DIT_BASE_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif
#include <cblas.h>

// n <= 0 keeps the default (all cores or OMP_NUM_THREADS).
static inline void dit_set_threads(int n) {
    if (n <= 0) return;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    openblas_set_num_threads(n);
}

static inline int dit_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

#endif
