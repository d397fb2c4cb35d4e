// A small CNN that classifies 32x32 one-channel images (Fashion-MNIST padded by 2 pixels of -1, the DiT data
// convention) and gives 128-d features for a Frechet distance: conv3x3(1->32) + ReLU + maxpool2 ->
// conv3x3(32->64) + ReLU + maxpool2 -> flatten -> linear(->128) + ReLU (the features) -> linear(->10).
// Trained by src/train/classifier_train.c; used by `dit eval --fmnist`. Notes: docs/eval.md.
#ifndef DIT_MODELS_CLASSIFIER_H
#define DIT_MODELS_CLASSIFIER_H

#include <stdint.h>

#include "dit.h"
#include "io/tensors.h"

typedef struct classifier_config {
    int image_size;     // 32 (a multiple of 4)
    int in_channels;    // 1
    int conv1, conv2;   // 32, 64 channels
    int features;       // 128: the feature layer
    int num_classes;    // 10
} classifier_config;

#define CLASSIFIER_PARAMS 8
typedef struct classifier_param {
    const char *name;   // conv1.weight, conv1.bias, conv2.weight, conv2.bias, fc1.weight, fc1.bias, fc2.weight, fc2.bias
    int ndim;
    int64_t shape[4];
    int64_t offset, numel;
} classifier_param;

typedef struct classifier {
    classifier_config cfg;
    classifier_param table[CLASSIFIER_PARAMS];
    int64_t total_floats;
    float *params;          // total_floats, in table order
    char *class_names;      // JSON array from the file (or NULL)
    double test_accuracy;   // recorded by training (-1 when unknown)
} classifier;

void classifier_config_default(classifier_config *cfg);
// A model with zero weights (NULL and an error for an invalid config).
classifier *classifier_create(const classifier_config *cfg);
void classifier_free(classifier *c);
// safetensors: the eight tensors (dtype DT_F32 or DT_F16) and __metadata__ format = "dit-classifier",
// classifier.config (JSON), classifier.class_names (JSON array, optional), classifier.train (JSON, optional:
// training record; its "test_accuracy" is read back). Written atomically.
dit_status classifier_save(const classifier *c, const char *path, dit_dtype dtype, const char *class_names_json,
                           const char *train_json);
classifier *classifier_load(const char *path);

// Activations of a batch of up to `capacity` images (and their gradients when with_grads); NULL when out of
// memory. The forward and backward return DIT_ERR when their convolution scratch cannot be allocated.
typedef struct classifier_acts {
    int capacity;
    float *a1, *p1, *a2, *p2;   // conv1 + ReLU (B, C1, S, S), pooled (B, C1, S/2, S/2), conv2 + ReLU, pooled
    float *features;            // fc1 + ReLU (B, F)
    float *logits;              // (B, classes)
    float *d_a1, *d_p1, *d_a2, *d_p2, *d_features;   // with_grads only
} classifier_acts;
classifier_acts *classifier_acts_create(const classifier_config *cfg, int capacity, int with_grads);
void classifier_acts_free(classifier_acts *a);

// x: (B, C, S, S) in [-1, 1], B <= a->capacity. Fills every activation, features and logits included.
dit_status classifier_forward(const classifier *c, classifier_acts *a, const float *x, int B);
// After classifier_forward on the same x: grads (total_floats, the parameter layout) += dL/dparams for
// dlogits = dL/dlogits (B, classes). Needs acts made with_grads.
dit_status classifier_backward(const classifier *c, classifier_acts *a, const float *x, const float *dlogits,
                               float *grads, int B);

// uint8 images (count, S, S, C) (NHWC, as ADM .npz) to the input layout (count, C, S, S): p / 127.5 - 1,
// the inverse of the samplers' uint8 conversion and equal to (p / 255 - 0.5) / 0.5.
void classifier_images_to_input(float *x, const uint8_t *images, int count, int S, int C);
// Classify uint8 images (count, S, S, C) in batches: pred (count, may be NULL) = argmax of the logits,
// features (count, F, may be NULL), logits (count, classes, may be NULL).
dit_status classifier_run(const classifier *c, const uint8_t *images, int count, int *pred, float *features,
                          float *logits);

// Place an IDX image (rows x cols uint8) in the middle of an S x S canvas of 0 (= -1 after scaling), shifted by
// (dy, dx) and mirrored when flip; pixels falling outside are dropped. dst: S * S bytes.
void classifier_place_image(uint8_t *dst, int S, const uint8_t *src, int rows, int cols, int dy, int dx, int flip);

#endif
