// The seeded hash of docs/testing.md that C and our Python references both compute, so golden files
// store inputs and outputs, never weights.
#ifndef DIT_MODELS_SYNTHETIC_H
#define DIT_MODELS_SYNTHETIC_H

#include <stdint.h>

// u in [-1, 1), exact in float32, for element i of the k-th tensor under seed.
float synthetic_uniform(uint32_t i, uint32_t k, uint32_t seed);

#endif
