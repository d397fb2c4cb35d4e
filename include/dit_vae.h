// dit: the Stable Diffusion KL-f8 autoencoder (AutoencoderKL of stabilityai/sd-vae-ft-ema / -mse) that
// maps images to DiT's latents and back (reference.md §4.4). Part of the public API next to dit.h.
#ifndef DIT_VAE_H
#define DIT_VAE_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DIT_VAE_MAX_LEVELS 8

typedef struct dit_vae_config {
    int in_channels;        // 3 (RGB)
    int out_channels;       // 3
    int latent_channels;    // 4
    int num_levels;         // len(block_out_channels): 4 for SD (downsampling factor 2^(levels - 1) = 8)
    int block_out[DIT_VAE_MAX_LEVELS];   // [128, 256, 512, 512] for SD
    int layers_per_block;   // 2: resnets per encoder level (the decoder has layers_per_block + 1)
    int norm_groups;        // 32 (GroupNorm eps 1e-6)
    float scaling_factor;   // 0.18215: DiT's latents are posterior samples times this
} dit_vae_config;

// The SD kl-f8 configuration.
void dit_vae_config_sd(dit_vae_config *cfg);
dit_status dit_vae_config_validate(const dit_vae_config *cfg);
// The spatial downsampling factor, 2^(num_levels - 1) (8 for SD).
int dit_vae_config_factor(const dit_vae_config *cfg);
// Multiply-adds (in units of 1e9) of one decode of an h x w latent, or with encode of one encode of the
// (f h) x (f w) image, counted as bench/ref_vae.py --count-macs counts them in PyTorch: every conv and linear
// (output elements x fan-in), plus attention's two T x T x C products (norms, activations, softmax not counted).
// What the convs cost done directly; dit's bf16 path does fewer (Winograd's algorithm, docs/precision.md).
double dit_vae_config_gmacs(const dit_vae_config *cfg, int h, int w, int encode);

typedef struct dit_vae dit_vae;

typedef struct dit_vae_load_options {
    int norm_groups;        // 0: 32 (files do not record it)
} dit_vae_load_options;

// Load from: diffusers safetensors (current to_q/to_k/to_v/to_out.0 or older query/key/value/proj_attn
// attention names), or the CompVis/ldm layout in a .ckpt (zip + pickle) or .safetensors, possibly under
// "state_dict.", "first_stage_model." or "vae.". Widths are inferred from the shapes. opts may be NULL.
dit_vae *dit_vae_load(const char *path, const dit_vae_load_options *opts);
// A VAE with the seeded test weights of docs/vae.md (conv/linear weights 1/sqrt(fan_in) u, biases 0.1 u,
// GroupNorm gamma 1 + 0.1 u, beta 0.1 u), for tests and benchmarks.
dit_vae *dit_vae_synthetic(const dit_vae_config *cfg, uint32_t seed);
void dit_vae_free(dit_vae *v);
// How the autoencoder's products run: dit_precision of dit.h. fp32 by default, and AUTO means fp32 here too:
// bf16 (an error of a few 1e-2 of max |out| on our test network, docs/precision.md) is an explicit choice. In
// bf16 the convolutions, 1x1 convs and attention are bf16 products with fp32 sums, the stride-1 3x3 convs by
// Winograd's algorithm (DIT_WINOGRAD=0 in the environment: directly); GroupNorm and activations stay fp32.
dit_status dit_vae_set_precision(dit_vae *v, dit_precision p);
dit_precision dit_vae_precision(const dit_vae *v);
const dit_vae_config *dit_vae_get_config(const dit_vae *v);

// The parameter table (diffusers' current key names, state_dict order) and the buffer behind it.
int dit_vae_num_params(const dit_vae *v);
// Name, shape (ndim <= 4) and values of the i-th tensor; NULL when i is out of range.
const float *dit_vae_param(const dit_vae *v, int i, const char **name, int *ndim, int64_t shape[4]);
size_t dit_vae_total_floats(const dit_vae *v);

// Encoder: x (B, in_channels, H, W) in [-1, 1], H and W multiples of the factor; moments
// (B, 2 * latent, H / f, W / f) = [mean | logvar] with logvar clamped to [-30, 20] (as the posterior does).
dit_status dit_vae_encode_moments(dit_vae *v, const float *x, int B, int H, int W, float *moments);
// The posterior: z = mean + exp(logvar / 2) * noise, or z = mean when noise is NULL.
// moments (B, 2 * latent, h, w)  noise, z: (B, latent, h, w). z is NOT multiplied by scaling_factor.
void dit_vae_posterior(const float *moments, const float *noise, int B, int latent, int h, int w, float *z);
// encode_moments then posterior (noise NULL: the mean).
dit_status dit_vae_encode(dit_vae *v, const float *x, int B, int H, int W, const float *noise, float *z);

// Decoder: z (B, latent, h, w), unscaled (divide DiT latents by scaling_factor first);
// x (B, out_channels, h * f, w * f), not clamped.
dit_status dit_vae_decode(dit_vae *v, const float *z, int B, int h, int w, float *x);
// Tiled decoding for large latents: tiles of tile x tile latent pixels overlapping by `overlap` latent
// pixels, blended linearly across the overlaps. Each tile is decoded on its own (GroupNorm statistics and
// attention are per tile, as diffusers' tiled_decode), so the result approximates dit_vae_decode.
// tile <= 0 or tile >= max(h, w): the untiled decode. 0 <= overlap < tile.
dit_status dit_vae_decode_tiled(dit_vae *v, const float *z, int B, int h, int w, int tile, int overlap, float *x);

#ifdef __cplusplus
}
#endif
#endif
