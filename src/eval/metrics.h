// Internals of the metrics (public API in include/dit_eval.h): ADM's distance-block geometry and the
// float16 rounding that reproduces its half-precision distances. See docs/eval.md.
#ifndef DIT_EVAL_METRICS_H
#define DIT_EVAL_METRICS_H

#include <stdint.h>

#include "dit_eval.h"

// ManifoldEstimator's row_batch_size = col_batch_size: the float16-or-float32 choice is made per block.
#define ADM_DISTANCE_BLOCK 10000
// ADM's Inception Score split size (10 splits of 50,000 samples).
#define ADM_IS_SPLIT_SIZE 5000
// ManifoldEstimator's nhood_sizes = (3,).
#define ADM_NEIGHBOURS 3

// f rounded to the nearest IEEE binary16 value (ties to even; beyond 65504 to +-inf), as a float.
float eval_round_half(float f);

// The squared-distance block ADM computes between rows u (rows x dim) and v (cols x dim):
// max(|u|^2 - 2 u.v + |v|^2, 0), each operation rounded to float16 when fp16 (u, v, norms already rounded),
// float32 otherwise. norm_u, norm_v: the matching squared norms. d: (rows, cols).
void eval_distance_block(float *d, const float *u, const float *norm_u, int rows, const float *v,
                         const float *norm_v, int cols, int dim, int fp16);

#endif
