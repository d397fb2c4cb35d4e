// The DiT network inside the library: parameter table (official checkpoint keys, shapes, offsets into one
// contiguous buffer), typed pointers into that buffer, and the activation arena of a forward pass.
#ifndef DIT_MODELS_DIT_MODEL_H
#define DIT_MODELS_DIT_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"
#include "ops/dispatch.h"

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
    float *ada_w, *ada_b;        // (6D, D), (6D) adaLN-Zero; (4D, D), (4D) adaLN; NULL for the plain blocks
    // plain blocks (cross-attention, in-context; dit_blocks.c): LayerNorm affine (D) each, else NULL
    float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    // cross-attention only: its LayerNorm (D), query (D, D), key-value (2D, D) rows [k | v], output (D, D)
    float *cross_norm_w, *cross_norm_b, *cross_q_w, *cross_q_b, *cross_kv_w, *cross_kv_b, *cross_proj_w, *cross_proj_b;
} dit_block_params;

typedef struct {
    float *pos_embed;                    // (T, D), fixed
    float *patch_w, *patch_b;            // (D, C, P, P), (D)
    float *t_mlp0_w, *t_mlp0_b;          // (D, 256), (D)
    float *t_mlp2_w, *t_mlp2_b;          // (D, D), (D)
    float *y_table;                      // (num_classes [+ 1], D)
    dit_block_params *blocks;            // depth
    float *final_w, *final_b;            // (P*P*out, D), (P*P*out)
    float *final_ada_w, *final_ada_b;    // (2D, D), (2D) adaLN blocks; NULL for the plain blocks
    float *final_norm_w, *final_norm_b;  // (D), (D) plain blocks' final LayerNorm affine; else NULL
} dit_params;

// The dense layers of the network as the op dispatch sees them (weights are views of dit_params, plus the
// back-end's prepared copies).
typedef struct {
    linear_layer qkv, proj, fc1, fc2, ada;
    linear_layer cross_q, cross_kv, cross_proj;   // cross-attention blocks only
} dit_block_layers;

typedef struct {
    linear_layer patch, t_mlp0, t_mlp2, final_ada, final;
    dit_block_layers *blocks;   // depth
} dit_layers;

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
    float *context;    // (B, 2, D) [t_emb, y_emb] of the cross-attention blocks
    float *cross_kv;   // (B, 2, 2D)
    // the doubled batch of a guided forward ([x; x], [t; t], [y; null], its output), grown only
    int cfg_capacity;
    float *cfg_x, *cfg_t, *cfg_out;
    int *cfg_y;
} dit_activations;

struct dit_model {
    dit_config cfg;
    int label_rows;        // rows of the label table: num_classes + (class_dropout_prob > 0)
    int mlp_hidden;        // int(D * mlp_ratio)
    int seq_tokens;        // tokens the blocks see: T, or T + 2 with in-context conditioning
    param_entry *table;
    int num_params;
    float *params;
    size_t total_floats;
    dit_params p;
    dit_activations acts;
    char **class_names;    // num_classes names, or NULL
    dit_objective objective;   // what the output means (eps or velocity); from __metadata__["dit.objective"]
    dit_precision precision;   // resolved: DIT_PRECISION_FP32 or DIT_PRECISION_BF16
    ops_context ops;           // precision and weights version, as the op dispatch reads them
    dit_layers layers;
};

// ---- the forward walk (dit_forward.c), shared by inference and training ----
// Where one block's intermediates go. Inference points every block at the same buffers (x_in = x_mid =
// x_out: the stream is updated in place; product/statistics NULL); training gives each block its slices.
typedef struct {
    float *x_in, *x_mid, *x_out;   // (B, T, D) block input, after the attention half, after the MLP half
    float *qkv, *attn;             // (B, T, 3D), (B, T, D)
    float *attn_stats;             // (B, H, T, 2) the attention's softmax statistics (training), or NULL
    float *proj, *fc2;             // (B, T, D) products before their gated residual (no bias), or NULL
    float *fc1;                    // (B, T, M) before GELU, or NULL
    float *mlp;                    // (B, T, M) after GELU
    float *ada;                    // (B, 6D)
    float *mean1, *rstd1, *mean2, *rstd2;   // (B, T) LayerNorm statistics, or NULL
    // cross-attention blocks (dit_blocks.c): x_mid -> x_cross = x_mid + cross_attn(norm(x_mid)) -> the MLP half
    float *x_cross;                // (B, T, D) (= x_mid in the other blocks)
    float *cross_q, *cross_out;    // (B, T, D) queries; attention output before its projection
    float *cross_kv;               // (B, 2, 2D) keys and values of the context
    float *mean_cross, *rstd_cross;   // (B, T) or NULL
} dit_block_slots;

typedef struct dit_forward_plan dit_forward_plan;
struct dit_forward_plan {
    int per_sample;        // 1: fp32 products one sample at a time (batch invariance); 0: whole batch
    int keeps_activations; // 1: training, the backward reads the block slots (attention's output in floats)
    void *owner;           // the activations the slots point into
    // The slots of block l; block(plan, depth).x_in is the input of the final layer.
    dit_block_slots (*block)(const dit_forward_plan *plan, int l);
    float *patches;        // (B, T, C*P*P)
    float *temb;           // (B, 256)
    float *t_hidden, *t_act;   // (B, D) t_embedder.mlp.0 output and its SiLU (may be one buffer)
    float *cond, *cond_act;    // (B, D) c and SiLU(c) (may be one buffer)
    float *context;        // (B, 2, D) [t_emb, y_emb] (cross-attention blocks), else unused
    float *h;              // (B, T, D) modulated LayerNorm output (scratch)
    float *scratch;        // (B, T, D) fp32 product before a gated residual when the slot keeps none
    float *scores;         // fp32 attention scratch
    float *final_ada;      // (B, 2D)
    float *final_mean, *final_rstd;   // (B, T) or NULL
    float *final_tokens;   // (B, T, P*P*out)
};
dit_status dit_forward_walk(dit_model *m, const dit_forward_plan *plan, const float *x, const float *t, const int *y,
                            int batch, float *out);

// Tell the model its float32 weights changed (loading, an optimizer step, a test's poke): prepared copies
// (packed bf16 weights) are remade on their next use.
void dit_model_weights_changed(dit_model *m);
// Free the forward activations (they are remade, at the size asked, by the next forward).
void dit_activations_free(dit_model *m);


// Build the table and allocate a zeroed parameter buffer (pos_embed filled) for a validated config.
dit_model *dit_model_create(const dit_config *cfg);
const param_entry *dit_param_find(const dit_model *m, const char *name);
// Fill every parameter but pos_embed from the seeded formula of docs/testing.md.
void dit_fill_synthetic(dit_model *m, uint32_t seed);

// ---- training (dit_backward.c) ----
// What the backward pass needs from a training forward, for one batch size. Per block l (arrays of depth
// slices): the block input x_in, the stream after the attention half x_mid, qkv, the attention output,
// the two projections before their gated residual (attn.proj and fc2 outputs without bias), the fc1
// output before GELU, the LayerNorm statistics and the adaLN output. The modulated LayerNorm outputs and
// the GELU output are recomputed in the backward (cheap, and they would cost 6 more D-wide floats per
// token per block). The rest is scratch for the backward.
typedef struct dit_train_activations {
    int batch;
    // saved by dit_forward_train
    float *patches;     // (B, T, C*P*P) patch embedding input
    float *x_in;        // (depth + 1, B, T, D): input of block l; slice depth = input of the final layer
    float *x_mid;       // (depth, B, T, D)
    float *qkv;         // (depth, B, T, 3D)
    float *attn;        // (depth, B, T, D)
    float *attn_stats;  // (depth, B, H, T, 2) softmax row max and 1 / sum (bf16 path; the backward's P from them)
    float *proj;        // (depth, B, T, D)  attn.proj output without bias
    float *fc1;         // (depth, B, T, M)  before GELU
    float *fc2;         // (depth, B, T, D)  mlp.fc2 output without bias
    float *ln_mean, *ln_rstd;   // (2 depth + 1, B, T): norm1, norm2 of each block, then norm_final
    float *ada;         // (depth, B, 6D), then the final layer's (B, 2D)
    float *temb;        // (B, 256) timestep frequencies
    float *t_hidden;    // (B, D) t_embedder.mlp.0 output before SiLU
    float *t_act;       // (B, D) after SiLU
    float *cond;        // (B, D) c = t_emb + y_emb (before the adaLN SiLU)
    float *cond_act;    // (B, D) SiLU(c)
    int *labels;        // (B)
    // backward scratch
    float *h;           // (B, T, D) recomputed modulated LayerNorm output
    float *gelu;        // (B, T, M) recomputed GELU output
    float *d_res;       // (B, T, D) gradient of the residual stream
    float *d_h;         // (B, T, D)
    float *d_tmp;       // (B, T, max(D, P*P*out))
    float *d_attn;      // (B, T, D)
    float *d_qkv;       // (B, T, 3D)
    float *d_mlp;       // (B, T, M)
    float *d_ada;       // (B, 6D)
    float *d_cond;      // (B, D) gradient of SiLU(c), summed over all adaLN layers
    float *d_small;     // (B, D)
    float *scores;      // attention scratch (forward and backward)
    int scores_threads;
    dit_block_params *grad_blocks;   // depth, pointers into the gradient buffer of the current call
    // The other block designs (dit_blocks.c; T above is then the blocks' sequence length, T + 2 in-context).
    // Saved: the conditioning tokens and, for cross-attention, per block l (arrays of depth slices) the
    // stream after it, its queries, keys-values, output before the projection and LayerNorm statistics.
    float *context;       // (B, 2, D) [t_emb, y_emb]
    float *x_cross;       // (depth, B, T, D)
    float *cross_q, *cross_out;       // (depth, B, T, D)
    float *cross_kv;      // (depth, B, 2, 2D)
    float *cross_mean, *cross_rstd;   // (depth, B, T)
    // backward scratch: the context's gradient (summed over blocks), one block's share, d keys-values,
    // and the gradient of y_emb
    float *d_context, *d_context_part, *d_kv, *d_label;   // (B, 2, D), (B, 2, D), (B, 2, 2D), (B, D)
} dit_train_activations;

// Allocate the saved activations and scratch of a training step for `batch` samples.
dit_train_activations *dit_train_activations_create(const dit_model *m, int batch);
void dit_train_activations_free(dit_train_activations *a);
// Forward pass that keeps what dit_backward needs; dit_model_forward's result up to float32 summation
// order (its GEMMs run over the whole batch). x: (B, C, S, S), t: (B), y: (B) labels, out: (B, out_channels, S, S); B = a->batch.
dit_status dit_forward_train(dit_model *m, dit_train_activations *a, const float *x, const float *t,
                             const int *y, float *out);
// Backward pass of the last dit_forward_train on `a`: dout = dL/dout (B, out_channels, S, S). Parameter
// gradients are ACCUMULATED (+=) into grads, m->total_floats floats in the parameter buffer's layout
// (same offsets as m->params); zero it first for a plain gradient. pos_embed (fixed) gets nothing.
dit_status dit_backward(dit_model *m, dit_train_activations *a, const float *dout, float *grads);
// The same into a buffer whose contents do not matter: grads is OVERWRITTEN (pos_embed's entries zeroed). In the
// adaLN-Zero design the linear layers' weight gradients are written by their products, with nothing to zero
// first or read back (ops_context.fresh_weight_grads; 3-4% of a DiT-S/2 bf16 step); every other entry, and
// every entry of the other designs, is zeroed and then added to as dit_backward does.
dit_status dit_backward_fresh(dit_model *m, dit_train_activations *a, const float *dout, float *grads);
// Benchmark hook: one warm-up, then `iters` timed forward + backward steps (seeded inputs, L = 0.5 |out|^2);
// returns the fastest step in seconds (< 0 on error).
double dit_train_step_seconds(dit_model *m, int batch, int iters);

// ---- the block designs other than adaLN-Zero (dit_blocks.c, reference.md §1.13) ----
// 1 for adaLN-Zero and adaLN (conditioning through SiLU(c) and a modulated final layer), 0 for the plain blocks.
int dit_block_adaptive(const dit_config *c);
// After t_emb (plan->cond, (B, D)) and before c = t_emb + y_emb: the plain blocks' conditioning tokens.
// Cross-attention: plan->context = [t_emb, y_emb]. In-context: the B * T patch tokens at the start of
// block(plan, 0).x_in are spread to T + 2 per sample and followed by t_emb, y_emb.
void dit_condition_tokens_forward(const dit_model *m, const dit_forward_plan *plan, const int *y, int B);
// One ungated block (adaLN, cross-attention, in-context), the twin of dit_forward.c's adaLN-Zero block.
dit_status dit_ungated_block_forward(const dit_model *m, dit_block_layers *bl, const dit_forward_plan *plan, int l,
                                     int B);
// The plain final LayerNorm: plan->h (B, T, D) = LN(image tokens of x_final) * w + b (in-context drops the
// two conditioning tokens); statistics into plan->final_mean/rstd when not NULL.
void dit_plain_final_norm_forward(const dit_model *m, const dit_forward_plan *plan, const float *x_final, int B);
// Training: allocate / free the fields above for the model's block design.
dit_status dit_blocks_train_alloc(const dit_model *m, dit_train_activations *a);
void dit_blocks_train_free(dit_train_activations *a);
// Training slots of block l (dit_backward.c), with the cross-attention slices filled in.
dit_block_slots dit_train_block_slots(const dit_model *m, dit_train_activations *a, int l);
// Backward of dit_ungated_block_forward: a->d_res from dL/d(block output) to dL/d(block input); the adaLN
// gradient adds into a->d_cond, the cross-attention context's into a->d_context.
dit_status dit_ungated_block_backward(dit_model *m, dit_train_activations *a, const dit_block_params *bp,
                                      const dit_block_params *gp, int l);
// Backward of the plain final LayerNorm: a->d_h (B, T, D) = dL/d(norm output) in, a->d_res (B, T_seq, D)
// overwritten with dL/dx_final (zero on the conditioning tokens); the affine's gradient into gp.
void dit_plain_final_norm_backward(dit_model *m, dit_train_activations *a, const dit_params *gp);
// Backward of dit_condition_tokens_forward, after the blocks: a->d_cond = dL/dt_emb, returns dL/dy_emb
// (B, D). In-context: takes the tokens' gradient out of a->d_res and packs it to the B * T patch rows.
const float *dit_condition_tokens_backward(const dit_model *m, dit_train_activations *a);

#endif
