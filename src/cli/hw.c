// `dit info --hw`: what this CPU offers the kernels (instruction sets, the path chosen, why AMX is not used
// if it is not) and the measured rate of one GEMM on every path it has, so machines can be compared.
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "ops/cpu/cpu_features.h"
#include "ops/cpu/blas_core.h"
#include "ops/dispatch.h"
#include "ops/peak.h"

int cli_print_hw(void) {
    const cpu_features *f = cpu_features_get();
    printf("cpu:           %s\n", f->brand[0] ? f->brand : "(no brand string)");
    printf("instructions:  AVX2 %s, FMA %s, AVX-512 F/BW/VL %s/%s/%s, AVX512-BF16 %s, AMX-TILE %s, AMX-BF16 %s\n",
           f->avx2 ? "yes" : "no", f->fma ? "yes" : "no", f->avx512f ? "yes" : "no", f->avx512bw ? "yes" : "no",
           f->avx512vl ? "yes" : "no", f->avx512_bf16 ? "yes" : "no", f->amx_tile ? "yes" : "no",
           f->amx_bf16 ? "yes" : "no");
    if (f->l2_bytes) printf("L2 cache:      %ld KB a core\n", f->l2_bytes >> 10);
    else printf("L2 cache:      not reported by the C library\n");
    if (f->amx_tile) printf("AMX:           %s\n", f->amx_granted ? "tile data granted by the kernel" : f->amx_refusal);
    const cpu_path best = cpu_path_best(), active = cpu_path_active();
    printf("kernel path:   %s%s%s\n", cpu_path_name(active), active != best ? " (lowered by DIT_CPU_PATH; best " : "",
           active != best ? cpu_path_name(best) : "");
    if (active != best) printf(")\n");
    printf("precision:     auto = %s\n", dit_compute_path(DIT_PRECISION_AUTO));
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    printf("OpenBLAS:      %s kernels%s%s%s\n", blas_core_name(), coretype ? " (OPENBLAS_CORETYPE=" : "",
           coretype ? coretype : "", coretype ? ")" : "");
    printf("GEMM 1024 x 1024 x 1024, %d threads (GFLOP/s, 2 flops per multiply-add):\n", cli_threads());
    // fp32: the product the model's linear layers run (our own on AVX-512, else sgemm)
    printf("  %-14s %8.0f\n", ops_fp32_linear_is_ours() ? "fp32 own" : "fp32 sgemm",
           dit_measure_gemm_gflops(DIT_PRECISION_FP32, 1024, 1024, 1024));
    const cpu_path bf16_paths[] = {CPU_PATH_AMX, CPU_PATH_AVX512_BF16};
    for (int i = 0; i < 2; i++) {
        if (bf16_paths[i] > active) {
            printf("  bf16 %-9s %8s\n", cpu_path_name(bf16_paths[i]), bf16_paths[i] > best ? "absent" : "off");
            continue;
        }
        cpu_path_force(bf16_paths[i]);
        printf("  bf16 %-9s %8.0f\n", cpu_path_name(bf16_paths[i]),
               dit_measure_gemm_gflops(DIT_PRECISION_BF16, 1024, 1024, 1024));
        cpu_path_force(active);
    }
    if (active >= CPU_PATH_AVX512_BF16) {   // the cores of a virtual machine or a hybrid CPU need not run alike
        enum { MAX_CPUS = 256 };
        int cpus[MAX_CPUS];
        double rates[MAX_CPUS], lo = 0, hi = 0;
        const int n = measure_cpu_bf16_gflops(cpus, rates, MAX_CPUS);
        printf("one core each, bf16 %s, 256 x 256 x 512 in L2 (GFLOP/s):", cpu_path_name(active));
        for (int i = 0; i < n; i++) {
            printf("%s cpu%d %.0f", i ? "," : "", cpus[i], rates[i]);
            if (!i || rates[i] < lo) lo = rates[i];
            if (!i || rates[i] > hi) hi = rates[i];
        }
        printf("\n");
        if (n > 1 && lo > 0 && hi > 1.3 * lo)
            printf("  the cores differ %.1fx: a timing moves with the core a thread runs on; dit's threads balance their "
                   "work\n", hi / lo);
    }
    return 0;
}
