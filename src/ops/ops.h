// The kernels of the DiT network, each an `op_forward` (its `op_backward` sits under it when training
// needs one). CPU versions in ops/cpu/ are the oracle for every other backend. Shapes in the comments;
// B batch, T tokens, D hidden, H heads, C channels, P patch, S spatial side.
#ifndef DIT_OPS_H
#define DIT_OPS_H

#include <stdint.h>

// ---- matmul.c ----
// linear_forward: out = inp @ weight^T + bias (PyTorch nn.Linear).
// inp: (M, K)  weight: (N, K)  bias: (N) or NULL  out: (M, N)
void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int M, int K, int N);
// linear_backward: dinp = dout @ weight (overwritten; NULL skips it), dweight += dout^T @ inp,
// dbias += sum over rows of dout (NULL skips it). Parameter gradients accumulate, as in PyTorch.
// dout: (M, N)   dinp: (M, K)   dweight: (N, K)   dbias: (N)
void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int M, int K, int N);
// bias_backward: dbias (N) += column sums of dout (M, N) (the bias part of linear_backward).
void bias_backward(float *dbias, const float *dout, int M, int N);

// ---- norm.c ----
// layernorm_modulate_forward: y = LN(x) * (1 + scale[b]) + shift[b]; LayerNorm without affine, eps 1e-6.
// x, y: (B, T, D)   shift, scale: rows of a (B, row_stride) matrix (the adaLN output chunks)
// mean, rstd: (B, T), kept for the backward pass (may be NULL)
void layernorm_modulate_forward(float *y, float *mean, float *rstd, const float *x, const float *shift,
                                const float *scale, int row_stride, int B, int T, int D);
// layernorm_modulate_backward: from dy and the forward's mean/rstd. dx is ACCUMULATED (+=): the input of
// every LayerNorm here is a residual stream whose gradient also flows through the skip connection.
// dshift, dscale: rows of a (B, row_stride) matrix (the adaLN output gradient), overwritten.
void layernorm_modulate_backward(float *dx, float *dshift, float *dscale, const float *dy, const float *x,
                                 const float *mean, const float *rstd, const float *scale, int row_stride,
                                 int B, int T, int D);

// ---- elementwise.c ----
// silu_forward: y = x * sigmoid(x), n elements (y may equal x).
void silu_forward(float *y, const float *x, int64_t n);
// silu_forward_serial: the same in the calling thread (for use inside a parallel region).
void silu_forward_serial(float *y, const float *x, int64_t n);
// silu_backward: dx = dy * sigmoid(x) * (1 + x (1 - sigmoid(x))) (dx may equal dy).
void silu_backward(float *dx, const float *dy, const float *x, int64_t n);
// gelu_tanh_forward: y = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), n elements (y may equal x).
void gelu_tanh_forward(float *y, const float *x, int64_t n);
// gelu_tanh_backward: dx = dy * d/dx [x sigmoid(2u)], u = sqrt(2/pi) (x + 0.044715 x^3) (dx may equal dy).
void gelu_tanh_backward(float *dx, const float *dy, const float *x, int64_t n);
// gated_residual_forward: x[b,t,:] += gate[b,:] * (y[b,t,:] + bias)
// x, y: (B, T, D)   gate: rows of a (B, row_stride) matrix   bias: (D) or NULL
void gated_residual_forward(float *x, const float *y, const float *bias, const float *gate, int row_stride,
                            int B, int T, int D);
// gated_residual_backward: dx is the gradient of the updated x (it also passes unchanged to the x before
// the update, so the caller keeps it). dy = gate * dx (overwritten); dgate[b,:] = sum_t dx * (y + bias)
// (rows of a (B, row_stride) matrix, overwritten); dbias += sum_{b,t} gate * dx (NULL skips it).
void gated_residual_backward(float *dy, float *dbias, float *dgate, const float *dx, const float *y,
                             const float *bias, const float *gate, int row_stride, int B, int T, int D);

// ---- attention.c ----
// attention_forward: multi-head softmax(Q K^T / sqrt(hd)) V, heads concatenated.
// qkv: (B, T, 3D), rows [q | k | v], head h at columns h*hd..(h+1)*hd of each part   out: (B, T, D)
// scratch: at least attention_scratch_floats(T, threads) floats (one T x T score block per thread).
void attention_forward(float *out, const float *qkv, float *scratch, int B, int T, int D, int H);
int64_t attention_scratch_floats(int T, int threads);
// attention_backward: dqkv (B, T, 3D, overwritten) from dout (B, T, D). Recomputes the softmax of each
// (batch, head) in scratch: at least attention_backward_scratch_floats(T, threads) floats (two T x T
// blocks per thread: the probabilities and their gradient).
void attention_backward(float *dqkv, const float *dout, const float *qkv, float *scratch, int B, int T, int D,
                        int H);
int64_t attention_backward_scratch_floats(int T, int threads);

// ---- cross_attention.c ----
// cross_attention_forward: multi-head softmax(Q K^T / sqrt(hd)) V from T query tokens to S context tokens.
// q: (B, T, D)   kv: (B, S, 2D), rows [k | v], head h at columns h*hd..(h+1)*hd of each part   out: (B, T, D)
#define CROSS_ATTENTION_MAX_KEYS 16
void cross_attention_forward(float *out, const float *q, const float *kv, int B, int T, int S, int D, int H);
// cross_attention_backward: dq (B, T, D) and dkv (B, S, 2D), both overwritten, from dout (B, T, D).
void cross_attention_backward(float *dq, float *dkv, const float *dout, const float *q, const float *kv, int B, int T,
                              int S, int D, int H);

// ---- norm_affine.c ----
// layernorm_affine_forward: y = LN(x) * weight + bias (nn.LayerNorm(D, eps=1e-6) with its affine), N rows.
// x, y: (N, D)   weight, bias: (D)   mean, rstd: (N), kept for the backward pass (may be NULL)
void layernorm_affine_forward(float *y, float *mean, float *rstd, const float *x, const float *weight,
                              const float *bias, int64_t N, int D);
// layernorm_affine_backward: dx += dL/dx (ACCUMULATED, as layernorm_modulate_backward: its input is a residual
// stream); dweight += sum_rows dy * xhat, dbias += sum_rows dy (parameter gradients accumulate).
void layernorm_affine_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                               const float *mean, const float *rstd, const float *weight, int64_t N, int D);

// ---- embed.c ----
// patchify_forward: x (B, C, S, S) -> patches (B, T, C*P*P) in (c, pi, qi) order, T = (S/P)^2, token = row*(S/P)+col.
void patchify_forward(float *patches, const float *x, int B, int C, int S, int P);
// patchify_backward: dx (B, C, S, S) from dpatches (B, T, C*P*P), the inverse permutation (overwritten).
void patchify_backward(float *dx, const float *dpatches, int B, int C, int S, int P);
// unpatchify_forward: tokens (B, T, P*P*C) in (pi, qi, c) order -> img (B, C, S, S) (reference einsum nhwpqc->nchpwq).
void unpatchify_forward(float *img, const float *tokens, int B, int C, int S, int P);
// unpatchify_backward: dtokens (B, T, P*P*C) from dimg (B, C, S, S), the inverse permutation (overwritten).
void unpatchify_backward(float *dtokens, const float *dimg, int B, int C, int S, int P);
// timestep_embedding_forward: out (B, 256): [cos(t f_i), sin(t f_i)], f_i = exp(-ln(10000) i / 128), as the reference in float32.
void timestep_embedding_forward(float *out, const float *t, int B, int dim);
// pos_embed_2d_sincos: out (G*G, D) in float64 maths then float32: [sin col, cos col, sin row, cos row].
void pos_embed_2d_sincos(float *out, int D, int G);

#endif
