// What one core's AMX unit gives, and how much of it dit's 32 x 32 micro-kernel (amx_kernel_32x32, gemm_amx.c)
// gets depending on where its operands lie. Prints one JSON line per case, GFLOP/s (2 flops a multiply-add):
//   tdpbf16ps registers      the tile multiply alone: six accumulator tiles, operand tiles loaded once
//   kernel A L1, B L1        a 32-row block of A and B panels that all fit in L1 (K = 256, two panels)
//   kernel A L1, B L2        A (K = 256, 16 KB) stays in L1, 32 panels of B (512 KB) stream from L2
//   kernel A L2, B L2        K = 1152 (A 72 KB, more than L1): both operands stream from L2 (dit's XL blocks)
//   ... streamed loads       the same with the tiles loaded by tileloaddt1 (AMX_LOADS_STREAM_BOTH), as dit
//                            loads blocks of 12 or more K steps
//   kernel A L1, B 64 MB     A in L1, 4,096 panels of B stream from beyond L2 (L3 or memory)
// The kernel figures are its best case (results to one L1 block, start from zero, no epilogue); the gap
// between "registers" and the kernel rows is the cost of delivering the operands, which is what bounds the
// products of a model whose 32 x K row blocks are larger than L1 (docs/precision.md, fifteenth sitting).
// Usage: build/amx_rate   (pin it to a core: taskset -c 0 build/amx_rate)
#include <immintrin.h>
#include <stdio.h>
#include <string.h>

#include "bench_util.h"
#include "ops/bf16.h"
#include "ops/cpu/cpu_features.h"

// Tiles stay configured in the thread (amx_configure, 16 rows x 64 bytes each); tmm6 and tmm7 hold operands.
__attribute__((target("amx-tile,amx-bf16"))) static double tdp_registers(long iterations) {
    // operands that are not zero: the unit runs measurably faster on zeros (less power), 13% in one test here
    static uint16_t a[512] __attribute__((aligned(64))), b[512] __attribute__((aligned(64)));
    for (int i = 0; i < 512; i++) a[i] = 0x3f80, b[i] = 0x3a80;   // bf16 1.0 and 2^-10
    _tile_loadd(6, a, 64);
    _tile_loadd(7, b, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    const double t0 = now_seconds();
    for (long n = 0; n < iterations; n++) {   // six independent chains hide the multiply's latency
        _tile_dpbf16ps(0, 6, 7);
        _tile_dpbf16ps(1, 6, 7);
        _tile_dpbf16ps(2, 6, 7);
        _tile_dpbf16ps(3, 6, 7);
        _tile_dpbf16ps(4, 6, 7);
        _tile_dpbf16ps(5, 6, 7);
    }
    return now_seconds() - t0;
}

static void report(const char *name, double flops, double seconds) {
    printf("{\"case\": \"%s\", \"gflops\": %.0f}\n", name, flops / seconds / 1e9);
}

// `rows` 32-row blocks of A (K = ksteps * 32, tile layout) against `panels` panels of B, every pair once per
// sweep, repeated for about 1.5e10 flops; the best of five runs.
static void kernel_case(const char *name, int ksteps, int rows, int panels, amx_loads loads) {
    const size_t a_elems = (size_t)rows * ksteps * 1024, b_elems = (size_t)panels * ksteps * 1024;
    uint16_t *A = aligned_alloc(64, a_elems * 2), *B = aligned_alloc(64, b_elems * 2);
    float *C = aligned_alloc(64, 32 * 32 * sizeof(float));
    if (!A || !B || !C) {
        printf("{\"case\": \"%s\", \"skipped\": \"out of memory\"}\n", name);
        free(A), free(B), free(C);
        return;
    }
    for (size_t i = 0; i < a_elems; i++) A[i] = 0x3f80;   // bf16 1.0 and 2^-10: the sums stay finite
    for (size_t i = 0; i < b_elems; i++) B[i] = 0x3a80;
    const a_layout at = a_layout_tiles(ksteps * 32);
    const double sweep = 2.0 * 32 * 32 * 32 * ksteps * (double)rows * panels;
    const long sweeps = (long)(1.5e10 / sweep) + 1;
    double best = 1e30;
    for (int run = 0; run < 5; run++) {
        const double t0 = now_seconds();
        for (long s = 0; s < sweeps; s++)
            for (int r = 0; r < rows; r++)
                for (int p = 0; p < panels; p++)
                    amx_kernel_32x32(NULL, 0, C, 32, A + (size_t)r * ksteps * 1024, &at, B + (size_t)p * ksteps * 1024,
                                     ksteps, NULL, 0, NULL, loads);
        const double t = now_seconds() - t0;
        if (t < best) best = t;
    }
    report(name, sweep * sweeps, best);
    free(A), free(B), free(C);
}

int main(void) {
    const cpu_features *f = cpu_features_get();
    printf("{\"cpu\": \"%s\"}\n", f->brand);
    if (cpu_path_best() < CPU_PATH_AMX) {
        printf("{\"case\": \"all\", \"skipped\": \"no AMX-BF16 tiles here (or the kernel refused them)\"}\n");
        return 0;
    }
    amx_configure();
    const long iterations = 10000000;
    double best = 1e30;
    for (int run = 0; run < 3; run++) {
        const double t = tdp_registers(iterations);
        if (t < best) best = t;
    }
    report("tdpbf16ps registers", 6.0 * iterations * 16 * 16 * 32 * 2, best);
    kernel_case("kernel A L1, B L1", 8, 1, 2, AMX_LOADS_CACHED);
    kernel_case("kernel A L1, B L2", 8, 1, 32, AMX_LOADS_CACHED);
    kernel_case("kernel A L2, B L2", 36, 1, 16, AMX_LOADS_CACHED);
    kernel_case("kernel A L2, B L2, streamed loads", 36, 1, 16, AMX_LOADS_STREAM_BOTH);
    kernel_case("kernel A L1, B 64 MB", 8, 1, 4096, AMX_LOADS_CACHED);
    amx_release();
    return 0;
}
