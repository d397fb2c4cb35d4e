// The thread count OpenMP will use (1 without OpenMP): sizes per-thread scratch buffers.
#ifndef DIT_BASE_THREADS_H
#define DIT_BASE_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif

static inline int dit_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

#endif
