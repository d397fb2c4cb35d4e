// OpenBLAS picks its float32 kernels by CPU model when it loads. A CPU newer than the OpenBLAS build (Debian 12's
// 0.3.21 does not know Sapphire/Emerald Rapids) gets its generic SSE3 kernels ("Prescott"): sgemm 4-5x slower
// than the AVX-512 kernels the CPU can run. The choice can only be changed before the library loads, through
// OPENBLAS_CORETYPE, so programs call blas_use_best_kernels(argv) first thing in main.
#ifndef DIT_OPS_CPU_BLAS_CORE_H
#define DIT_OPS_CPU_BLAS_CORE_H

// If OpenBLAS runs its generic kernels on a CPU with AVX-512 (or AVX2) and OPENBLAS_CORETYPE is unset, set it to
// SkylakeX (or Haswell) and restart the program with the same arguments (execv of /proc/self/exe). Returns
// only when nothing needed changing, or the restart failed (then the program runs on, as before).
void blas_use_best_kernels(char **argv);
// The kernel set OpenBLAS is running ("SkylakeX", "Prescott", ...), or "none" without OpenBLAS.
const char *blas_core_name(void);

#endif
