// See blas_core.h.
#include "ops/cpu/blas_core.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#ifdef DIT_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "ops/cpu/cpu_features.h"

const char *blas_core_name(void) {
#ifdef DIT_HAVE_OPENBLAS
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
#else
    return "none";
#endif
}

void blas_use_best_kernels(char **argv) {
#ifdef DIT_HAVE_OPENBLAS
    if (getenv("OPENBLAS_CORETYPE") || strcasecmp(blas_core_name(), "prescott") != 0) return;
    const cpu_features *f = cpu_features_get();
    const char *best = f->avx512f && f->os_zmm ? "SkylakeX" : f->avx2 && f->fma ? "Haswell" : NULL;
    if (!best || setenv("OPENBLAS_CORETYPE", best, 1) != 0) return;
    execv("/proc/self/exe", argv);   // returns only on failure: carry on with the generic kernels
    unsetenv("OPENBLAS_CORETYPE");
#else
    (void)argv;
#endif
}
