// One core's rate on the instructions the kernels are built from, with nothing but registers involved:
// vfmadd231ps on 256- and 512-bit vectors (the float32 path) and vdpbf16ps on 512-bit vectors (the
// AVX512-BF16 path). Twelve independent accumulators (all fit in the 16 ymm registers) hide the latency, so
// the figure is the issue rate. It says what a kernel can reach on this core: whether bf16 dot products beat
// float32 FMAs here (on AMD Zen 4 they carry about twice the flops; on the Intel Emerald Rapids cores this
// project was built on, half: they issue at a quarter of the FMAs' rate). Usage: build/isa_rate   (prints one JSON line per instruction)
#include <immintrin.h>
#include <stdio.h>

#include "bench_util.h"
#include "ops/cpu/cpu_features.h"

enum { ITERS = 20000000 };

#define TIMES12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static void report(const char *name, double seconds, int flops_per_instr) {
    const double instrs = 12.0 * ITERS;
    printf("{\"instruction\": \"%s\", \"g_instructions_per_second\": %.3f, \"gflops\": %.1f}\n", name,
           instrs / seconds / 1e9, instrs * flops_per_instr / seconds / 1e9);
}

__attribute__((target("avx2,fma"))) static double fma256(void) {
#define DECL(i) __m256 a##i = _mm256_set1_ps((float)(i) * 1e-3f);
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, x, y);
#define SINK(i) __asm__ volatile("" : "+x"(a##i));
    TIMES12(DECL)
    const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-3f);
    const double t0 = now_seconds();
    for (int n = 0; n < ITERS; n++) {
        TIMES12(STEP)
        TIMES12(SINK)
    }
    return now_seconds() - t0;
#undef DECL
#undef STEP
#undef SINK
}

__attribute__((target("avx512f"))) static double fma512(void) {
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)(i) * 1e-3f);
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, x, y);
#define SINK(i) __asm__ volatile("" : "+v"(a##i));
    TIMES12(DECL)
    const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
    const double t0 = now_seconds();
    for (int n = 0; n < ITERS; n++) {
        TIMES12(STEP)
        TIMES12(SINK)
    }
    return now_seconds() - t0;
#undef DECL
#undef STEP
#undef SINK
}

__attribute__((target("avx512f,avx512bf16"))) static double dpbf16_512(void) {
#define DECL(i) __m512 a##i = _mm512_setzero_ps();
#define STEP(i) a##i = _mm512_dpbf16_ps(a##i, x, y);
#define SINK(i) __asm__ volatile("" : "+v"(a##i));
    TIMES12(DECL)
    const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = (__m512bh)_mm512_set1_epi32(0x3a803a80);
    const double t0 = now_seconds();
    for (int n = 0; n < ITERS; n++) {
        TIMES12(STEP)
        TIMES12(SINK)
    }
    return now_seconds() - t0;
#undef DECL
#undef STEP
#undef SINK
}

int main(void) {
    const cpu_features *f = cpu_features_get();
    printf("{\"cpu\": \"%s\"}\n", f->brand);
    report("vfmadd231ps ymm", fma256(), 16);
    if (cpu_path_best() >= CPU_PATH_AVX512) report("vfmadd231ps zmm", fma512(), 32);
    else printf("{\"instruction\": \"vfmadd231ps zmm\", \"skipped\": \"no AVX-512\"}\n");
    if (cpu_path_best() >= CPU_PATH_AVX512_BF16) report("vdpbf16ps zmm", dpbf16_512(), 64);
    else printf("{\"instruction\": \"vdpbf16ps zmm\", \"skipped\": \"no AVX512-BF16\"}\n");
    return 0;
}
