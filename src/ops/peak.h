// Measured matrix-product rates beyond dit_measure_gemm_gflops (include/dit.h).
#ifndef DIT_OPS_PEAK_H
#define DIT_OPS_PEAK_H

// One core's bf16 GEMM rate (the active bf16 path; 256 x 256 x 512 with its operands in L2) on each CPU this
// process may run on, one after another, the calling thread pinned to each in turn and then let go again:
// cpus[i] is the CPU's number, rates[i] its GFLOP/s. Returns how many CPUs were measured (at most max_cpus).
int measure_cpu_bf16_gflops(int *cpus, double *rates, int max_cpus);

#endif
