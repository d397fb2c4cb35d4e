// The autoencoder inside the library: parameter table (diffusers' current keys, state_dict order), typed
// pointers into one float buffer, and the layer forwards that tests check at full SD width.
#ifndef DIT_MODELS_VAE_H
#define DIT_MODELS_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "dit_vae.h"
#include "ops/bf16.h"

#define VAE_NAME_MAX 80
#define VAE_MAX_LAYERS 8    // layers_per_block limit (the decoder has one more)
#define VAE_GN_EPS 1e-6f

typedef struct {
    char name[VAE_NAME_MAX];     // e.g. "decoder.up_blocks.2.resnets.0.conv_shortcut.weight"
    int ndim;
    int64_t shape[4];
    size_t offset;               // in floats, into the parameter buffer
    size_t numel;
} vae_param;

// ResnetBlock2D: GN -> SiLU -> conv1 3x3 -> GN -> SiLU -> conv2 3x3, plus x (or conv_shortcut(x) when
// cin != cout). No time embedding, dropout 0.
typedef struct {
    int cin, cout;
    const float *norm1_w, *norm1_b, *conv1_w, *conv1_b;      // (cin), (cin), (cout, cin, 3, 3), (cout)
    const float *norm2_w, *norm2_b, *conv2_w, *conv2_b;      // (cout), (cout), (cout, cout, 3, 3), (cout)
    const float *shortcut_w, *shortcut_b;                    // (cout, cin, 1, 1), (cout); NULL when cin == cout
} vae_resnet;

// The mid-block attention: GN -> to_q/to_k/to_v (Linear C -> C) -> one head over all positions -> to_out.0,
// plus the residual.
typedef struct {
    int C;
    const float *norm_w, *norm_b;
    const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *out_w, *out_b;   // (C, C), (C)
} vae_attention;

// Growable scratch buffers for one sample's activations (reused across layers and calls), and how the
// convolutions run: bf16 (implicit GEMM, ops/cpu/conv_bf16.c; decoder and encoder channels-last, vae.c) with
// each weight (3x3, and on the channels-last path the 1x1 convs and attention linears) packed on first use, in
// the form its conv reads (taps: 9 for the direct 3x3, 16 for Winograd's, 1 for a 1x1 or linear).
typedef struct {
    const float *weight;
    int taps;
    bf16_packed packed;
} vae_packed_conv;

typedef struct {
    float *buf[8];
    size_t cap[8];
    int bf16;
    vae_packed_conv *packed;
    int num_packed, cap_packed;
} vae_work;
float *vae_work_get(vae_work *w, int index, size_t floats);
void vae_work_free(vae_work *w);

// x: (cin, H, W) one sample -> out (cout, H, W); out must not overlap x. Uses work buffers 4..7.
dit_status vae_resnet_forward(float *out, const float *x, const vae_resnet *r, int H, int W, int groups,
                              vae_work *w);
// x: (C, H, W) -> out (C, H, W); out must not overlap x. Uses work buffers 4..7.
dit_status vae_attention_forward(float *out, const float *x, const vae_attention *a, int H, int W, int groups,
                                 vae_work *w);

// The seeded formula of docs/vae.md for the k-th tensor (GroupNorm weights, i.e. 1-D "...norm...weight",
// get 1 + 0.1 u; other 1-D tensors 0.1 u; the rest 1/sqrt(fan_in) u).
void vae_fill_synthetic_tensor(float *dst, const char *name, int ndim, const int64_t *shape, uint32_t k,
                               uint32_t seed);

typedef struct {
    vae_resnet resnets[DIT_VAE_MAX_LEVELS][VAE_MAX_LAYERS + 1];
    const float *sample_w[DIT_VAE_MAX_LEVELS], *sample_b[DIT_VAE_MAX_LEVELS];   // down/upsampler conv, NULL on the last level
} vae_levels;

struct dit_vae {
    dit_vae_config cfg;
    vae_param *table;
    int num_params;
    float *params;
    size_t total_floats;
    // encoder
    const float *enc_in_w, *enc_in_b, *enc_norm_w, *enc_norm_b, *enc_out_w, *enc_out_b;
    vae_levels down;
    vae_resnet enc_mid[2];
    vae_attention enc_attn;
    const float *quant_w, *quant_b, *post_quant_w, *post_quant_b;
    // decoder (up level i runs i-th, at the lowest resolution first)
    const float *dec_in_w, *dec_in_b, *dec_norm_w, *dec_norm_b, *dec_out_w, *dec_out_b;
    vae_levels up;
    vae_resnet dec_mid[2];
    vae_attention dec_attn;
    vae_work work;
};

// Build the table and a zeroed parameter buffer for a validated config.
dit_vae *vae_create(const dit_vae_config *cfg);
const vae_param *vae_param_find(const dit_vae *v, const char *name);

#endif
