// Training the Fashion-MNIST classifier of `dit eval --fmnist` (src/models/classifier.h): IDX splits placed on
// the 32x32 canvas of the DiT data, random flips and shifts, cross-entropy, AdamW (train_adamw_update) with a
// cosine learning rate. `dit train-classifier` (src/cli/classifier.c) drives it. Notes: docs/eval.md.
#ifndef DIT_TRAIN_CLASSIFIER_TRAIN_H
#define DIT_TRAIN_CLASSIFIER_TRAIN_H

#include <stdint.h>

#include "dit.h"
#include "models/classifier.h"

// Philox streams (after src/train/train.h's 16..22).
enum {
    RNG_STREAM_CLASSIFIER_INIT = 23,      // weights: counter (element, tensor index, 0, 23)
    RNG_STREAM_CLASSIFIER_AUGMENT = 24,   // flip and shift of batch slot b at step s: counter (b, s, 0, 24)
};

// One IDX split with its labels. images: (count, rows, cols) uint8; labels: (count).
typedef struct classifier_dataset {
    int count, rows, cols;
    uint8_t *images, *labels;
} classifier_dataset;

// spec: "fashion-mnist" (Debian's /usr/share/datasets/fashion-mnist) or a folder holding
// {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; test != 0 picks t10k.
dit_status classifier_dataset_load(classifier_dataset *d, const char *spec, int test);
void classifier_dataset_free(classifier_dataset *d);
// The images `indices` (NULL: 0..count-1) centred on S x S canvases of 0, unshifted: (count, S, S) uint8, the
// input of classifier_run (malloc'd; NULL when out of memory).
uint8_t *classifier_dataset_canvases(const classifier_dataset *d, const int *indices, int count, int S);

typedef struct classifier_train_options {
    int epochs;              // 8
    int batch;               // 128
    double lr;               // 1e-3, cosine-decayed to 0 over the run
    double weight_decay;     // 1e-4 (AdamW, decoupled)
    int hflip;               // 1: mirror with probability 1/2
    int shift;               // 0; else shift by dy, dx uniform in [-shift, shift] pixels
    uint64_t seed;           // 0
} classifier_train_options;
void classifier_train_options_default(classifier_train_options *o);

typedef struct classifier_epoch_stats {
    int epoch, epochs;              // 1-based
    double train_loss;              // mean cross-entropy over the epoch's (augmented) batches
    double train_accuracy;          // on the same batches, before each update
    double test_accuracy;           // on the test split after the epoch (-1 without one)
    double seconds;                 // the epoch's wall time, evaluation included
} classifier_epoch_stats;

// He-uniform weights (bound sqrt(6 / fan_in)), zero biases, from Philox stream RNG_STREAM_CLASSIFIER_INIT.
void classifier_train_init_weights(classifier *c, uint64_t seed);

// Mean cross-entropy of logits (B, K) against labels (B) (log-sum-exp in double); dlogits (may be NULL) =
// (softmax - onehot) / B; *correct (may be NULL) = how many argmaxes equal the label.
double classifier_cross_entropy(const float *logits, const uint8_t *labels, int B, int K, float *dlogits,
                                int *correct);

// *accuracy = the share of d's first `limit` images (all when limit <= 0 or beyond count) that c classifies right.
dit_status classifier_accuracy(const classifier *c, const classifier_dataset *d, int limit, double *accuracy);

// Train c in place from its current weights. test may be NULL. on_epoch (may be NULL) after every epoch.
dit_status classifier_train(classifier *c, const classifier_dataset *train, const classifier_dataset *test,
                            const classifier_train_options *o,
                            void (*on_epoch)(void *ctx, const classifier_epoch_stats *st), void *ctx);

#endif
