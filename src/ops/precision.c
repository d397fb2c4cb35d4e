// Precision choices of the public API (dit.h): names, what AUTO means on this machine, and which kernels a
// precision runs here (cpu_features.h).
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "dit.h"
#include "ops/cpu/cpu_features.h"
#include "ops/dispatch.h"

static const char *const precision_names[] = {"auto", "fp32", "bf16"};

dit_status dit_precision_parse(const char *name, dit_precision *out) {
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, precision_names[i])) {
            *out = (dit_precision)i;
            return DIT_OK;
        }
    return dit_set_error("precision '%s': expected auto, fp32 or bf16", name ? name : "");
}

const char *dit_precision_name(dit_precision p) { return (unsigned)p < 3 ? precision_names[p] : "?"; }

static int cpu_has_bf16(void) { return cpu_path_active() >= CPU_PATH_AVX512_BF16; }

dit_precision dit_precision_resolve(dit_precision p) {
    if (p == DIT_PRECISION_AUTO) {
        const char *env = getenv("DIT_PRECISION");
        dit_precision from_env = DIT_PRECISION_AUTO;
        if (env && *env && dit_precision_parse(env, &from_env) == DIT_OK && from_env != DIT_PRECISION_AUTO)
            p = from_env;
        else
            return cpu_has_bf16() ? DIT_PRECISION_BF16 : DIT_PRECISION_FP32;
        if (p == DIT_PRECISION_BF16 && !cpu_has_bf16()) return DIT_PRECISION_FP32;   // AUTO never fails
    }
    return p;
}

const char *dit_compute_path(dit_precision p) {
    p = dit_precision_resolve(p);
    const cpu_path path = cpu_path_active();
    if (p == DIT_PRECISION_BF16) {
        if (path == CPU_PATH_AMX) return "bf16 on AMX tiles (fp32 accumulation)";
        if (path == CPU_PATH_AVX512_BF16) return "bf16 on AVX512-BF16 dot products (fp32 accumulation)";
        const cpu_features *f = cpu_features_get();
        if (cpu_path_best() >= CPU_PATH_AVX512_BF16) {
            dit_set_error("precision bf16: the bf16 paths of this CPU are switched off (DIT_CPU_PATH=%s)",
                          cpu_path_name(path));
            return NULL;
        }
        dit_set_error("precision bf16: this CPU (%s) has no bf16 matrix path: it lacks AVX512-BF16%s%s",
                      f->brand[0] ? f->brand : "unknown", f->amx_refusal ? " and AMX is unusable: " : " and AMX-BF16",
                      f->amx_refusal ? f->amx_refusal : "");
        return NULL;
    }
    return path >= CPU_PATH_AVX512 ? "fp32 on AVX-512 (linear layers: own kernel; the rest: OpenBLAS sgemm)" : "fp32 on AVX2 (OpenBLAS sgemm)";
}

