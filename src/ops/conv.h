// The convolutional kernels of the Stable Diffusion KL-f8 autoencoder (reference.md §4.4): conv2d,
// GroupNorm (+ SiLU), nearest 2x upsampling and single-head spatial attention. CPU versions in
// ops/cpu/conv.c. Activations are NCHW; one sample's (C, H*W) block is channel-major, so a 1x1 conv is a
// plain sgemm. B batch, C channels, H/W height/width, T = H*W positions.
#ifndef DIT_OPS_CONV_H
#define DIT_OPS_CONV_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"

// The output side of a convolution: (in + pad_before + pad_after - kernel) / stride + 1 (<= 0: empty).
int conv2d_out_size(int in, int kernel, int stride, int pad_before, int pad_after);

// conv2d_forward: PyTorch Conv2d (dilation 1, groups 1) on x zero-padded by pad_top/left/bottom/right,
// so the encoder's asymmetric downsample pad (0, 1, 0, 1) is a plain call.
// x: (B, Cin, H, W)  weight: (Cout, Cin, KH, KW)  bias: (Cout) or NULL  out: (B, Cout, OH, OW)
// With AVX-512, stride-1 convs other than the plain 1x1 run a direct kernel on a zero-padded, row-interleaved
// copy of x (no column buffer); 1x1 stride-1 unpadded convs are one sgemm per sample; the rest is im2col +
// sgemm over bands of output rows, so the column buffer stays under 64 MB. out must not overlap x.
dit_status conv2d_forward(float *out, const float *x, const float *weight, const float *bias, int B, int Cin, int H,
                    int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom,
                    int pad_right);
// The convolutions return DIT_ERR only when their scratch (columns, padded or upsampled input) cannot be
// allocated.
// conv2d_forward_ex: the same with three extras for the autoencoder's hot path: out += residual (out's shape,
// or NULL; it must not overlap out); with upsample != 0, x is (B, Cin, H/2, W/2) upsampled nearest 2x on the
// fly (H and W even: the sizes after upsampling); workspace: conv2d_workspace_floats(...) floats owned by the
// caller and reused across calls (NULL: allocated per call).
dit_status conv2d_forward_ex(float *out, const float *x, const float *weight, const float *bias, const float *residual,
                       float *workspace, int upsample, int B, int Cin, int H, int W, int Cout, int KH, int KW,
                       int stride, int pad_top, int pad_left, int pad_bottom, int pad_right);
int64_t conv2d_workspace_floats(int Cin, int H, int W, int KH, int KW, int stride, int pad_top, int pad_left,
                                int pad_bottom, int pad_right);
// The same with an explicit column-buffer budget in floats (tests force many bands with a tiny one).
dit_status conv2d_forward_budget(float *out, const float *x, const float *weight, const float *bias, int B, int Cin,
                           int H, int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left,
                           int pad_bottom, int pad_right, int64_t budget_floats);

// groupnorm_forward: y = (x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c], statistics per (sample,
// group) over C/G channels x T positions in float64 (biased variance, as PyTorch); silu != 0 applies
// y * sigmoid(y) after. x, y: (B, C, T) (y may equal x)  gamma, beta: (C)
void groupnorm_forward(float *y, const float *x, const float *gamma, const float *beta, int B, int C, int T,
                       int G, float eps, int silu);

// upsample_nearest2x_forward: out[n, 2i + a, 2j + b] = x[n, i, j]. x: (N, H, W) (N = B * C)  out: (N, 2H, 2W)
void upsample_nearest2x_forward(float *out, const float *x, int N, int H, int W);

// spatial_attention_forward: single-head softmax(Q^T K / sqrt(C)) over all T positions, one sample.
// q, k, v: (C, T) channel-major (a 1x1 conv's output)   out: (C, T), out[:, t] = sum_s p[t, s] v[:, s]
// Queries go in blocks of SPATIAL_ATTENTION_BLOCK; each thread holds one block x T score matrix (two-pass
// softmax in float32, fast_expf), so memory grows with T, never T^2.
// scratch: spatial_attention_scratch_floats(T, threads) floats.
#define SPATIAL_ATTENTION_BLOCK 64
void spatial_attention_forward(float *out, const float *q, const float *k, const float *v, float *scratch, int C,
                               int T);
int64_t spatial_attention_scratch_floats(int T, int threads);

// ---- the classifier's training ops (conv2d_backward in ops/cpu/conv.c; relu and maxpool in ops/cpu/pool.c) ----
// conv2d_backward: the gradients of conv2d_forward (same arguments). dx (B, Cin, H, W) is overwritten (NULL
// skips it: a first layer); dweight (Cout, Cin, KH, KW) and dbias (Cout, NULL skips it) ACCUMULATE (+=), as
// linear_backward. dout: (B, Cout, OH, OW). Deterministic whatever the thread count.
dit_status conv2d_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x, const float *weight,
                     int B, int Cin, int H, int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left,
                     int pad_bottom, int pad_right);
// relu_forward: y = max(x, 0), n elements (y may equal x).
void relu_forward(float *y, const float *x, int64_t n);
// relu_backward: dx = dy where y > 0, else 0; y is the forward's output (or its input) (dx may equal dy).
void relu_backward(float *dx, const float *dy, const float *y, int64_t n);
// maxpool2x2_forward: F.max_pool2d(kernel 2, stride 2): out[n, i, j] = max x[n, 2i..2i+1, 2j..2j+1].
// x: (N, H, W) (N = B * C)  out: (N, H/2, W/2)
void maxpool2x2_forward(float *out, const float *x, int N, int H, int W);
// maxpool2x2_backward: dx (N, H, W), overwritten: each window's dout goes to its maximum (the first in
// row-major order among equal ones), zero elsewhere. dout: (N, H/2, W/2)  x: the forward's input.
void maxpool2x2_backward(float *dx, const float *dout, const float *x, int N, int H, int W);

#endif
