// The convolutional kernels of the Stable Diffusion KL-f8 autoencoder (dit-reference.md §4.4): conv2d,
// GroupNorm (+ SiLU), nearest 2x upsampling and single-head spatial attention. CPU versions in
// ops/cpu/conv.c. Activations are NCHW; one sample's (C, H*W) block is channel-major, so a 1x1 conv is a
// plain sgemm. B batch, C channels, H/W height/width, T = H*W positions.
#ifndef DIT_OPS_CONV_H
#define DIT_OPS_CONV_H

#include <stddef.h>
#include <stdint.h>

// The output side of a convolution: (in + pad_before + pad_after - kernel) / stride + 1 (<= 0: empty).
int conv2d_out_size(int in, int kernel, int stride, int pad_before, int pad_after);

// conv2d_forward: PyTorch Conv2d (dilation 1, groups 1) on x zero-padded by pad_top/left/bottom/right,
// so the encoder's asymmetric downsample pad (0, 1, 0, 1) is a plain call.
// x: (B, Cin, H, W)  weight: (Cout, Cin, KH, KW)  bias: (Cout) or NULL  out: (B, Cout, OH, OW)
// im2col + sgemm over bands of output rows, so the column buffer stays under 64 MB; 1x1 stride-1 unpadded
// convs are one sgemm per sample. out must not overlap x.
void conv2d_forward(float *out, const float *x, const float *weight, const float *bias, int B, int Cin, int H,
                    int W, int Cout, int KH, int KW, int stride, int pad_top, int pad_left, int pad_bottom,
                    int pad_right);
// The same with an explicit column-buffer budget in floats (tests force many bands with a tiny one).
void conv2d_forward_budget(float *out, const float *x, const float *weight, const float *bias, int B, int Cin,
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

#endif
