// The FID Inception-v3 (pytorch-fid's fid_inception_v3: torchvision's Inception3 with the FID patches), its
// file-key table and the pieces tests reach: the bilinear resize and the synthetic weight formula.
#ifndef DIT_MODELS_INCEPTION_H
#define DIT_MODELS_INCEPTION_H

#include <stddef.h>
#include <stdint.h>

#include "dit_eval.h"

#define INCEPTION_NUM_CONVS 94
#define INCEPTION_NUM_TENSORS (INCEPTION_NUM_CONVS * 5 + 2)   // conv + 4 BatchNorm tensors each, fc.weight/bias
#define INCEPTION_BN_EPS 0.001

// One BasicConv2d: conv (no bias) + BatchNorm(eps 0.001) + ReLU, folded at load into conv + bias + ReLU.
typedef struct {
    char name[40];              // "Mixed_6d.branch1x1"
    int cin, cout, kh, kw, stride, pad_h, pad_w;
    size_t weight_offset;       // (cout, cin, kh, kw) in dit_inception.params, BatchNorm scale folded in
    size_t bias_offset;         // (cout): beta - running_mean * scale
} inception_conv;

// A tensor of the checkpoint (the layout of pytorch-fid's state_dict, num_batches_tracked left out), in
// state_dict order: for every conv, conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var; then
// fc.weight, fc.bias.
typedef struct {
    char name[56];
    int ndim;
    int64_t shape[4];
    size_t numel;
} inception_tensor;

// The checkpoint's tensors in order (INCEPTION_NUM_TENSORS entries).
void inception_tensor_table(inception_tensor *table);

// The synthetic value of element i of tensor k (docs/eval.md): bit-identical to tests/ref/inception_ref.py.
float inception_synthetic_value(const inception_tensor *t, uint32_t k, uint32_t i, uint32_t seed);

// The folded parameters (convs, then fc.weight), for tests comparing two loads.
const float *inception_params(const dit_inception *m, size_t *count);

// Bilinear resize of a (C, H, W) float image to (C, OH, OW): PyTorch's align_corners=False mapping, or TF1's
// legacy one (source = dest * in / out).
dit_status inception_resize_bilinear(float *dst, const float *src, int C, int H, int W, int OH, int OW,
                                     dit_inception_resize mode);

#endif
