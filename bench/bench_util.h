// Shared pieces of the C benchmarks: the median of timings (the clock is base/clock.h). Threads are set with
// base/threads.h (OpenMP and OpenBLAS together, so both sides of a comparison use the same count).
#ifndef DIT_BENCH_UTIL_H
#define DIT_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

#include "base/clock.h"
#include "base/threads.h"

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
