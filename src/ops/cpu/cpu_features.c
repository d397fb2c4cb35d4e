// CPUID-based detection of the instruction sets the kernels need, and the Linux permission request for AMX
// tile data (without it the first tile instruction kills the process with SIGILL).
#include "ops/cpu/cpu_features.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static cpu_features features;
static cpu_path best_path, active_path;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static unsigned long long read_xcr0(void) {
    unsigned int eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

static void detect(void) {
    cpu_features *f = &features;
    unsigned int eax, ebx, ecx, edx;
    int osxsave = 0;
    if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
        f->fma = (ecx >> 12) & 1;
        osxsave = (ecx >> 27) & 1;
    }
    unsigned long long xcr0 = osxsave ? read_xcr0() : 0;
    int os_ymm = (xcr0 & 0x6) == 0x6;
    f->os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;
    int os_amx = (xcr0 & 0x60000) == 0x60000;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) {
        f->avx2 = os_ymm && ((ebx >> 5) & 1);
        f->avx512f = f->os_zmm && ((ebx >> 16) & 1);
        f->avx512bw = f->os_zmm && ((ebx >> 30) & 1);
        f->avx512vl = f->os_zmm && ((ebx >> 31) & 1);
        f->amx_bf16 = (edx >> 22) & 1;
        f->amx_tile = (edx >> 24) & 1;
        unsigned int max_sub = eax;
        if (max_sub >= 1 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx))
            f->avx512_bf16 = f->avx512f && ((eax >> 5) & 1);
    }
    unsigned int brand[12] = {0};
    if (__get_cpuid(0x80000000, &eax, &ebx, &ecx, &edx) && eax >= 0x80000004) {
        for (unsigned int i = 0; i < 3; i++)
            __get_cpuid(0x80000002 + i, &brand[4 * i], &brand[4 * i + 1], &brand[4 * i + 2], &brand[4 * i + 3]);
        memcpy(f->brand, brand, 48);
        f->brand[48] = 0;
        char *s = f->brand;   // trim the leading spaces some CPUs put there
        while (*s == ' ') s++;
        memmove(f->brand, s, strlen(s) + 1);
    }
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    f->l2_bytes = l2 > 0 ? l2 : 0;
    if (f->amx_tile && f->amx_bf16) {
        if (!os_amx) f->amx_refusal = "the OS does not enable the AMX state (XCR0)";
        else if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
            f->amx_refusal = "the kernel refused the AMX tile-data permission (arch_prctl ARCH_REQ_XCOMP_PERM)";
        else f->amx_granted = 1;
    }
    int avx512 = f->avx512f && f->avx512bw && f->avx512vl;
    best_path = CPU_PATH_AVX2;
    if (avx512) best_path = CPU_PATH_AVX512;
    if (avx512 && f->avx512_bf16) best_path = CPU_PATH_AVX512_BF16;
    if (best_path == CPU_PATH_AVX512_BF16 && f->amx_granted) best_path = CPU_PATH_AMX;
    active_path = best_path;
    const char *forced = getenv("DIT_CPU_PATH");
    if (forced && *forced) {
        int p = cpu_path_parse(forced);
        if (p < 0)
            fprintf(stderr, "dit: DIT_CPU_PATH=%s is not a path (amx, avx512-bf16, avx512, avx2); using %s\n", forced,
                    cpu_path_name(best_path));
        else if (p > (int)best_path)
            fprintf(stderr, "dit: DIT_CPU_PATH=%s: this CPU's best path is %s; using that\n", forced,
                    cpu_path_name(best_path));
        else active_path = (cpu_path)p;
    }
}

const cpu_features *cpu_features_get(void) {
    pthread_once(&once, detect);
    return &features;
}

cpu_path cpu_path_best(void) {
    pthread_once(&once, detect);
    return best_path;
}

cpu_path cpu_path_active(void) {
    pthread_once(&once, detect);
    return active_path;
}

int cpu_path_force(cpu_path p) {
    pthread_once(&once, detect);
    if (p > best_path) return -1;
    active_path = p;
    return 0;
}

static const char *const path_names[] = {"avx2", "avx512", "avx512-bf16", "amx"};

const char *cpu_path_name(cpu_path p) { return (unsigned)p < 4 ? path_names[p] : "?"; }

int cpu_path_parse(const char *name) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, path_names[i])) return i;
    return -1;
}
