// Shared pieces of the C benchmarks: a monotonic clock and the median of timings. Threads are set with
// base/threads.h (OpenMP and OpenBLAS together, so both sides of a comparison use the same count).
#ifndef DIT_BENCH_UTIL_H
#define DIT_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

#include "base/threads.h"

static inline double bench_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline int bench_compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Sorts t in place and returns the median of its n values.
static inline double bench_median(double *t, int n) {
    qsort(t, n, sizeof *t, bench_compare_doubles);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

#endif
