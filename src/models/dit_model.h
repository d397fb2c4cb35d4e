// The DiT network inside the library: parameter table (official checkpoint keys, shapes, offsets into one
// contiguous buffer), typed pointers into that buffer, and the activation arena of a forward pass.
#ifndef DIT_MODELS_DIT_MODEL_H
#define DIT_MODELS_DIT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"

#define PARAM_NAME_MAX 64

typedef struct {
    char name[PARAM_NAME_MAX];   // official key, e.g. "blocks.3.attn.qkv.weight"
    int ndim;
    int64_t shape[4];
    size_t offset;               // in floats, into the parameter buffer
    size_t numel;
} param_entry;

typedef struct {
    float *qkv_w, *qkv_b;        // (3D, D), (3D)
    float *proj_w, *proj_b;      // (D, D), (D)
    float *fc1_w, *fc1_b;        // (M, D), (M)    M = mlp hidden
    float *fc2_w, *fc2_b;        // (D, M), (D)
    float *ada_w, *ada_b;        // (6D, D), (6D)
} dit_block_params;

typedef struct {
    float *pos_embed;                    // (T, D), fixed
    float *patch_w, *patch_b;            // (D, C, P, P), (D)
    float *t_mlp0_w, *t_mlp0_b;          // (D, 256), (D)
    float *t_mlp2_w, *t_mlp2_b;          // (D, D), (D)
    float *y_table;                      // (num_classes [+ 1], D)
    dit_block_params *blocks;            // depth
    float *final_w, *final_b;            // (P*P*out, D), (P*P*out)
    float *final_ada_w, *final_ada_b;    // (2D, D), (2D)
} dit_params;

// Activations of one forward pass, sized for `capacity` samples.
typedef struct {
    int capacity;
    float *x;          // (B, T, D) residual stream
    float *h;          // (B, T, D) normalised + modulated
    float *qkv;        // (B, T, 3D)
    float *attn;       // (B, T, D)
    float *mlp;        // (B, T, M)
    float *tmp;        // (B, T, max(D, C*P*P, P*P*out))
    float *cond;       // (B, D)   c = t_emb + y_emb, then SiLU(c)
    float *temb;       // (B, 256) and (B, D) scratch for the timestep MLP
    float *tmid;       // (B, D)
    float *ada;        // (B, 6D)
    float *scores;     // attention scratch
    int scores_threads;
} dit_activations;

struct dit_model {
    dit_config cfg;
    int label_rows;        // rows of the label table: num_classes + (class_dropout_prob > 0)
    int mlp_hidden;        // int(D * mlp_ratio)
    param_entry *table;
    int num_params;
    float *params;
    size_t total_floats;
    dit_params p;
    dit_activations acts;
};

// Build the table and allocate a zeroed parameter buffer (pos_embed filled) for a validated config.
dit_model *dit_model_create(const dit_config *cfg);
const param_entry *dit_param_find(const dit_model *m, const char *name);
// Fill every parameter but pos_embed from the seeded formula of docs/testing.md.
void dit_fill_synthetic(dit_model *m, uint32_t seed);

#endif
