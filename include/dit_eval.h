// dit evaluation: the FID Inception-v3 network (pytorch-fid's port of TensorFlow's 2015-12-05 graph) and the
// metrics of ADM's evaluator (openai/guided-diffusion evaluations/evaluator.py): FID, sFID, Inception Score,
// precision and recall. See docs/eval.md for what matches the reference exactly and what may differ.
#ifndef DIT_EVAL_H
#define DIT_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"

#ifdef __cplusplus
extern "C" {
#endif

// ---- the Inception network --------------------------------------------------------------------------
#define DIT_INCEPTION_SIZE 299           // the network's input side; every image is resized to it
#define DIT_INCEPTION_POOL_DIM 2048      // pool_3: the global average pool after Mixed_7c (FID, P/R)
#define DIT_INCEPTION_SPATIAL_DIM 2023   // mixed_6/conv[..., :7]: 17 x 17 x 7, in (h, w, c) order (sFID)
#define DIT_INCEPTION_CLASSES 1008       // the softmax layer of the TF graph (IS)

// How images reach 299 x 299 and [-1, 1].
typedef enum {
    // pytorch-fid: p / 255, F.interpolate(bilinear, align_corners=False), then 2x - 1.
    DIT_RESIZE_PYTORCH_FID = 0,
    // TensorFlow's graph as ADM feeds it: ResizeBilinear on [0, 255] with TF1's legacy pixel mapping
    // (source = dest * in / out, no half-pixel offset), then (x - 128) / 128.
    DIT_RESIZE_TF_LEGACY = 1,
} dit_inception_resize;

typedef struct dit_inception dit_inception;

// Load pytorch-fid's weights (pt_inception-2015-12-05-6726825d.pth, re-saved in the zip format if needed)
// or a safetensors file with the same keys (Conv2d_1a_3x3.conv.weight, ..., fc.weight [1008, 2048]).
// BatchNorm (eps 0.001) is folded into the convolutions.
dit_inception *dit_inception_load(const char *path);
// The network with parameters from the seeded formula of docs/eval.md (tests).
dit_inception *dit_inception_synthetic(uint32_t seed);
void dit_inception_free(dit_inception *m);
void dit_inception_set_resize(dit_inception *m, dit_inception_resize mode);

// One image to the network's input. rgb: (height, width, 3) uint8.  x: (3, 299, 299) float.
dit_status dit_inception_preprocess(float *x, const uint8_t *rgb, int height, int width, dit_inception_resize mode);

// Features of a batch of images. images: (batch, height, width, 3) uint8 (NHWC, as ADM's .npz batches).
// pool: (batch, 2048)  spatial: (batch, 2023)  logits: (batch, 1008) = pool @ fc.weight^T, *without* fc.bias,
// as ADM's Inception Score feeds its softmax. Any output may be NULL. Images are spread over the OpenMP
// threads, one image per thread; memory is a fixed workspace per thread.
dit_status dit_inception_forward(dit_inception *m, const uint8_t *images, int batch, int height, int width,
                                 float *pool, float *spatial, float *logits);
// The same from preprocessed inputs x: (batch, 3, 299, 299).
dit_status dit_inception_forward_prepared(dit_inception *m, const float *x, int batch, float *pool, float *spatial,
                                          float *logits);

// ---- statistics and metrics ---------------------------------------------------------------------------
// Streaming mean and covariance (float64) of feature rows: 50,000 images never need to be in memory at once.
typedef struct dit_moments dit_moments;
dit_moments *dit_moments_create(int dim);
void dit_moments_add(dit_moments *a, const float *rows, int count);   // rows: (count, dim)
int64_t dit_moments_count(const dit_moments *a);
// mu (dim) = np.mean(x, 0); sigma (dim, dim) = np.cov(x, rowvar=False) (ddof 1). Needs at least 2 rows.
dit_status dit_moments_finish(dit_moments *a, double *mu, double *sigma);
void dit_moments_free(dit_moments *a);

// The Frechet distance |mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr((s1 s2)^1/2), the trace of the square root from
// the eigenvalues of s1^1/2 s2 s1^1/2 (symmetric positive semi-definite; LAPACK dsyevd).
dit_status dit_frechet_distance(const double *mu1, const double *sigma1, const double *mu2, const double *sigma2,
                                int dim, double *distance);

// Streaming Inception Score as ADM: consecutive splits of split_size samples (the last may be shorter),
// exp(mean KL(p(y|x) || p(y))) per split; *mean and *std (population) over the splits.
typedef struct dit_inception_score dit_inception_score;
dit_inception_score *dit_inception_score_create(int classes, int split_size);
dit_status dit_inception_score_add(dit_inception_score *s, const float *logits, int count);   // (count, classes)
dit_status dit_inception_score_finish(dit_inception_score *s, double *mean, double *std, int *splits);
void dit_inception_score_free(dit_inception_score *s);

// ADM's ManifoldEstimator (improved precision and recall, k = 3): squared distances; the radius of a point is
// its k-th smallest distance over its own set, itself included at 0. fp16 != 0 reproduces ADM's float16
// distance blocks (float32 where a 10000 x 10000 block could overflow). radii: (count).
dit_status dit_manifold_radii(float *radii, const float *features, int64_t count, int dim, int k, int fp16);
// precision = fraction of samples inside some reference ball, recall = fraction of references inside some
// sample ball. ref: (n_ref, dim)  samples: (n_samples, dim)
dit_status dit_precision_recall(const float *ref, int64_t n_ref, const float *samples, int64_t n_samples, int dim,
                                int k, int fp16, double *precision, double *recall);

#ifdef __cplusplus
}
#endif
#endif
