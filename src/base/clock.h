// Wall-clock seconds from a monotonic clock, for durations (timing, progress, timeouts).
#ifndef DIT_BASE_CLOCK_H
#define DIT_BASE_CLOCK_H

#include <time.h>

static inline double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
