// What this CPU can run, found once by CPUID at run time (one binary for every x86-64-v3 machine), and the
// kernel path chosen from it: AMX tiles, AVX512-BF16 dot products, or float32 (AVX-512 or AVX2).
// DIT_CPU_PATH=amx|avx512-bf16|avx512|avx2 forces a lower path, so that every path is tested on one machine.
#ifndef DIT_OPS_CPU_CPU_FEATURES_H
#define DIT_OPS_CPU_CPU_FEATURES_H

typedef enum {
    CPU_PATH_AVX2 = 0,          // float32 only (x86-64-v3: AVX2 + FMA)
    CPU_PATH_AVX512 = 1,        // float32 with AVX-512F/BW/VL kernels
    CPU_PATH_AVX512_BF16 = 2,   // + bf16 dot products (vdpbf16ps): the bf16 GEMM on vector units
    CPU_PATH_AMX = 3,           // + AMX-BF16 tiles (tdpbf16ps), after the kernel granted tile data
} cpu_path;

typedef struct {
    int avx2, fma, avx512f, avx512bw, avx512vl, avx512_bf16, amx_tile, amx_bf16;
    int os_zmm;             // the OS saves the AVX-512 state (XCR0 bits 5-7)
    int amx_granted;        // arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA) succeeded
    const char *amx_refusal;  // why AMX is not used although the CPU has it (NULL if it is, or if absent)
    long l2_bytes;          // one core's L2 cache as the C library reports it; 0 if it does not
    char brand[49];
} cpu_features;

// The features of this CPU (detected on first call; thread-safe after the first call returns).
// A function built for AVX-512 in a file built for the x86-64-v3 floor; call it only where cpu_path_active() is
// CPU_PATH_AVX512 or above.
#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))

const cpu_features *cpu_features_get(void);
// The best path this CPU and OS allow.
cpu_path cpu_path_best(void);
// The path kernels use: cpu_path_best() unless DIT_CPU_PATH or cpu_path_force() lowered it.
cpu_path cpu_path_active(void);
// Force a path (for tests and benchmarks); returns -1 and leaves the path unchanged if the CPU lacks it.
int cpu_path_force(cpu_path p);
const char *cpu_path_name(cpu_path p);
// Parse a path name ("amx", "avx512-bf16", "avx512", "avx2"); -1 if unknown.
int cpu_path_parse(const char *name);

#endif
