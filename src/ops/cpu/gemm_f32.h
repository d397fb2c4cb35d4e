// Our float32 linear-layer product on AVX-512 (gemm_f32.c): one chain of FMAs per output element, so the
// result of a row depends neither on the batch around it nor on the thread count.
#ifndef DIT_OPS_CPU_GEMM_F32_H
#define DIT_OPS_CPU_GEMM_F32_H

#include "base/error.h"

// What the product does with its sums before it stores them (NULL: out = sum + bias):
// gelu: out = gelu_tanh(sum + bias), the same bits as gelu_tanh_forward applied after;
// gate: out += gate[row / gate_rows][col] * (sum + bias) (adaLN-Zero's gated residual: out holds the residual
// stream), the same bits as gated_residual_forward applied after.
typedef struct {
    int gelu;
    const float *gate;
    int gate_stride, gate_rows;
} gemm_f32_epilogue;

// out (M, N) = inp (M, K) @ weight^T + bias (NULL: none), then the epilogue; weight (N, K) row-major. Only where
// the active CPU path is AVX-512 or above. DIT_ERR only when the panel buffers cannot be allocated (error set).
dit_status gemm_f32_linear(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N,
                           const gemm_f32_epilogue *ep);

#endif
