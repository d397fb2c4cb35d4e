// dit: Scalable Diffusion Models with Transformers (Peebles & Xie), in C.
// The public API: opaque handles, configuration structs and error codes.
//
// Threads. The library keeps no mutable global state except the error message, which is per thread
// (dit_last_error reads the calling thread's). So:
//  - config functions (dit_config_*, dit_heads_for_hidden) and loaders (dit_model_load, dit_vae_load,
//    dit_inception_load, ...) are safe to call from any number of threads at once;
//  - a handle (dit_model, dit_vae, dit_inception, dit_moments, ...) is used by one thread at a time: a forward
//    pass writes the handle's activation buffers, so two threads sharing one model must lock around it; two
//    threads with two handles (even of the same file) need no lock;
//  - each call spreads its work over OpenMP threads and OpenBLAS (the count is process-wide:
//    omp_set_num_threads / OMP_NUM_THREADS); concurrent calls from several threads each start their own team.
// Failure: calls return DIT_ERR or NULL with a message; bad input never ends the process. Running out of
// memory is such an error too: every call of this file, dit_vae.h and dit_eval.h that allocates (loading,
// saving, dit_model_synthetic, dit_model_set_class_names, dit_model_find_class, dit_model_forward[_cfg],
// dit_sample, dit_decode_images, dit_png_encode, the VAE's load/encode/decode, dit_inception_load/synthetic/
// preprocess/forward, dit_moments_create/finish, dit_inception_score_create/add/finish, dit_frechet_distance,
// dit_manifold_radii, dit_precision_recall) returns DIT_ERR or NULL with "out of memory allocating N bytes
// ...", frees what it took, and leaves the handle usable (activations are regrown by the next call). No library
// code ends the process on out of memory; tests/test_oom.c checks each of these paths. Multi-process runs (MPI)
// end every rank on purpose when the program calls the internal dist_abort, never on their own.
#ifndef DIT_H
#define DIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DIT_OK = 0, DIT_ERR = 1 } dit_status;

// The message of the last failure on this thread ("file: what was expected, what was found").
const char *dit_last_error(void);

// ---- DiT network configuration (see docs/reference.md §1) ----
// The block designs of the paper's Fig. 3 and Fig. 5 (docs/reference.md §1.13). adaLN-Zero is the published
// model (and what a file without a "block" entry holds); the others exist to reproduce the comparison.
typedef enum {
    DIT_BLOCK_ADALN_ZERO = 0,        // adaLN with zero-initialised gates before every residual (§1.6)
    DIT_BLOCK_ADALN = 1,             // adaLN (shift, scale), no gates
    DIT_BLOCK_CROSS_ATTENTION = 2,   // plain blocks + cross-attention over the 2 tokens [t_emb, y_emb]
    DIT_BLOCK_IN_CONTEXT = 3,        // plain blocks; t_emb, y_emb appended as 2 extra tokens
} dit_block_kind;
// "adaln-zero", "adaln", "cross-attention", "in-context" -> *out; an error naming them otherwise.
dit_status dit_block_parse(const char *name, dit_block_kind *out);
const char *dit_block_name(dit_block_kind block);

typedef struct dit_config {
    int input_size;        // latent (or pixel) side, e.g. 32 for 256 px images
    int patch_size;        // p
    int in_channels;       // 4 for SD latents
    int hidden_size;       // D
    int depth;             // number of DiT blocks
    int num_heads;         // H
    float mlp_ratio;       // 4.0
    int num_classes;       // 1000; the label table has num_classes + 1 rows when class_dropout > 0
    float class_dropout_prob; // 0.1; > 0 adds the null-class row used by classifier-free guidance
    int learn_sigma;       // 1: out_channels = 2 * in_channels
    dit_block_kind block;  // DIT_BLOCK_ADALN_ZERO (0) unless asked otherwise
} dit_config;

// Fill *cfg with a named configuration ("DiT-XL/2", ...) at an image size (latent = image / 8).
dit_status dit_config_named(dit_config *cfg, const char *name, int image_size);
// Check a configuration is self-consistent (divisibility, positive sizes).
dit_status dit_config_validate(const dit_config *cfg);
int dit_config_out_channels(const dit_config *cfg);
// The head count of a named width (384, 768, 1024, 1152), 0 for any other.
int dit_heads_for_hidden(int hidden);
// The config as a JSON object (as stored in dit's own files under __metadata__["dit.config"]).
dit_status dit_config_to_json(const dit_config *cfg, char *buf, size_t n);
// Parse such a JSON object (every field required) and validate it; `what` names the input in messages.
dit_status dit_config_from_json(dit_config *cfg, const char *json, const char *what);
int dit_config_tokens(const dit_config *cfg);
// The names of the 12 configurations of the paper, NULL-terminated.
extern const char *const dit_named_configs[];

// Parameter count (including the fixed pos_embed) and forward cost in the paper's convention
// (multiply-accumulates per sample, in units of 1e9).
int64_t dit_config_param_count(const dit_config *cfg);
double dit_config_gmacs(const dit_config *cfg);

typedef struct dit_model dit_model;

// How the matrix products run. AUTO: bf16 inputs with float32 accumulation where the CPU has a bf16
// matrix path (AMX tiles or AVX512-BF16), float32 elsewhere (the environment variable DIT_PRECISION=fp32|bf16
// overrides what AUTO means). FP32: the exact float32 path that matches the reference. BF16: bf16 products;
// an error on a CPU without a bf16 path. Everything around the products (norms, softmax, sums) stays float32.
typedef enum { DIT_PRECISION_AUTO = 0, DIT_PRECISION_FP32 = 1, DIT_PRECISION_BF16 = 2 } dit_precision;
// "auto", "fp32", "bf16" -> *out; an error naming the accepted values otherwise.
dit_status dit_precision_parse(const char *name, dit_precision *out);
const char *dit_precision_name(dit_precision p);
// The kernels a precision runs on this machine, in words ("bf16 on AMX tiles", "fp32 on AVX-512"); AUTO is
// resolved first. NULL with an error set if the CPU cannot run it (naming the missing instruction set).
const char *dit_compute_path(dit_precision p);
// This machine's rate for one product out (M, N) = A (M, K) @ B (N, K)^T in a precision, in GFLOP/s (2 flops
// per multiply-add; the best of 5 timed runs, weights packed beforehand); 0 if the CPU cannot run it (or
// memory for the operands runs out).
double dit_measure_gemm_gflops(dit_precision p, int M, int N, int K);

// What a file may not say about its model: 0 = infer (heads from the named widths, input size from pos_embed).
typedef struct dit_load_options {
    int num_heads;
    int input_size;   // latent side (image size / 8 for SD latents)
    int skip_ema;     // 1: a checkpoint's trained weights ("model." or unprefixed), not its "ema." copy
    int input_size_if_unknown;   // latent side used only when neither the file, a diffusers config.json beside
                                 // it, nor input_size says it (dit forward passes the side of --x)
} dit_load_options;

// Load a model from any supported file: official .pt (raw state_dict or train.py dict, whose "ema" wins),
// safetensors with official keys, diffusers-layout safetensors (with its folder's config.json when present:
// sample_size and num_attention_heads), or dit's own safetensors. opts may be NULL.
dit_model *dit_model_load(const char *path, const dit_load_options *opts);
// A model with parameters from the seeded test formula (see docs/testing.md), for tests and benchmarks.
dit_model *dit_model_synthetic(const dit_config *cfg, uint32_t seed);
void dit_model_free(dit_model *m);
const dit_config *dit_model_config(const dit_model *m);
// Choose the precision of the model's products (models start at AUTO, resolved). Error if bf16 is asked
// on a CPU without a bf16 path. The model keeps float32 weights; bf16 copies are packed on first use.
dit_status dit_model_set_precision(dit_model *m, dit_precision p);
// The resolved precision (FP32 or BF16).
dit_precision dit_model_precision(const dit_model *m);
// The display name of a class ("T-shirt/top"), when the file carries names (__metadata__["dit.class_names"],
// a JSON list); NULL otherwise.
const char *dit_model_class_name(const dit_model *m, int label);
// Attach class names (copied; count must equal num_classes). Saved by dit_model_save.
dit_status dit_model_set_class_names(dit_model *m, const char *const *names, int count);
// What the network predicts (docs/diffusion.md). EPS: DiT's noise prediction on the IDDPM process (with the
// variance in the extra channels of learned-sigma models). V_FLOW: flow matching (SiT): the velocity
// noise - x0 of the linear interpolant x_t = (1 - t) x0 + t noise, t = 0 data, t = 1 noise, timestep 1000 t;
// learned-sigma networks use their first C channels as the velocity and ignore the rest.
// dit's files record it in __metadata__["dit.objective"] ("eps" or "v-flow"); files without the key are EPS.
typedef enum { DIT_OBJECTIVE_EPS = 0, DIT_OBJECTIVE_V_FLOW = 1 } dit_objective;
// "eps", "v-flow" -> *out; an error naming the accepted values otherwise.
dit_status dit_objective_parse(const char *name, dit_objective *out);
const char *dit_objective_name(dit_objective o);
dit_objective dit_model_objective(const dit_model *m);
dit_status dit_model_set_objective(dit_model *m, dit_objective o);
// Save in dit's own format: official keys, config JSON in __metadata__; atomic.
dit_status dit_model_save(const dit_model *m, const char *path);
// The same with the weights stored as "f32", "f16" or "bf16" (round to nearest even; computation stays
// float32). Reduced-precision files leave out pos_embed, which the loader recomputes exactly.
dit_status dit_model_save_as(const dit_model *m, const char *path, const char *dtype);

// One network evaluation. x: (B, C, S, S); t: (B) timesteps (original 0..999 units); y: (B) labels.
// out: (B, out_channels, S, S). Threads: OpenMP's count (see the top of this file).
dit_status dit_model_forward(dit_model *m, const float *x, const float *t, const int *y, int batch,
                             float *out);
// Classifier-free guidance exactly as the reference forward_with_cfg: x, t, y are the conditional half
// (B samples); the unconditional half uses the null class. out: (B, out_channels, S, S), the guided
// result for the conditional half. guide_all_channels = 0 guides output channels 0..2 as the reference does
// (model_out[:, :3]: for a 1-channel learned-sigma model, eps and its variance channel), 1 every eps channel only.
dit_status dit_model_forward_cfg(dit_model *m, const float *x, const float *t, const int *y, int batch,
                                 float cfg_scale, int guide_all_channels, float *out);
// Guidance limited to an interval of noise levels (Kynkaanniemi et al. 2024, "Applying guidance in a limited
// interval"): samples whose timestep t[b] lies in [t_lo, t_hi] (0..1000 units) are guided as above, the others
// get the conditional output alone; when none is in the interval the unconditional half is not computed.
dit_status dit_model_forward_cfg_interval(dit_model *m, const float *x, const float *t, const int *y, int batch,
                                          float cfg_scale, int guide_all_channels, float t_lo, float t_hi,
                                          float *out);


// ---- Class names ----
// dit_model_class_name also answers for 1000-class models whose file has no names: the ImageNet-1k names
// shipped with dit (data/imagenet1k-classes.txt, built into the library), the first synonym of each.
// The ImageNet-1k class of a label: its display name ("golden retriever") and all its synonyms
// ("tench, Tinca tinca"); NULL outside 0..999.
const char *dit_imagenet_class_name(int label);
const char *dit_imagenet_class_synonyms(int label);
// A class given by id ("207") or by name, case-insensitive (any ImageNet synonym for 1000-class models).
// An unknown or ambiguous name fails with a message listing the close matches.
dit_status dit_model_find_class(const dit_model *m, const char *text, int *label);

// ---- Sampling, decoding, PNG: what an embedder (and `dit serve`) needs ----
// ddpm, ddim and dpm++2m sample EPS models; flow-euler, flow-heun (ODE) and flow-em (Euler-Maruyama SDE) sample
// V_FLOW models
// (docs/diffusion.md "Flow matching"). dit_sample refuses a sampler of the other objective.
typedef enum {
    DIT_SAMPLER_DDPM = 0, DIT_SAMPLER_DDIM = 1, DIT_SAMPLER_DPMPP_2M = 2,
    DIT_SAMPLER_EULER = 3, DIT_SAMPLER_HEUN = 4, DIT_SAMPLER_EULER_MARUYAMA = 5,
} dit_sampler;
// "ddpm", "ddim", "dpm++2m" (or "dpmpp2m"), "flow-euler", "flow-heun", "flow-em" (or
// "flow-euler-maruyama"); DIT_ERR otherwise.
dit_status dit_sampler_parse(const char *name, dit_sampler *out);
const char *dit_sampler_name(dit_sampler s);
// The default step count of a sampler: 250 for ddpm and ddim (as sample.py), 25 for dpm++2m, 50 for
// flow-euler, 25 for flow-heun (two network evaluations a step), 100 for flow-em.
int dit_sampler_default_steps(dit_sampler s);
// The objective a sampler is for (DIT_OBJECTIVE_EPS or DIT_OBJECTIVE_V_FLOW).
dit_objective dit_sampler_objective(dit_sampler s);
// The sampler used when none is named: ddpm for EPS models (dpm++2m where speed matters: dit serve), flow-heun
// for V_FLOW models.
dit_sampler dit_model_default_sampler(const dit_model *m);

// Called with step 0 before the first network evaluation, then after each step (1..total, counted over
// all batches of the call). Return non-zero to cancel: dit_sample then stops at the next step and fails
// with the message "sampling cancelled".
typedef int (*dit_progress_fn)(void *ctx, int step, int total);

typedef struct dit_sample_options {
    dit_sampler sampler;
    int steps;                 // 0: dit_sampler_default_steps
    float cfg_scale;           // > 1: classifier-free guidance (needs a model with a null class); <= 1: off
    int guide_all_channels;    // 0: guide eps channels 0..2 as the reference; 1: all channels (V_FLOW models
                               // always guide all velocity channels)
    float eta;                 // DDIM only (0: deterministic)
    int batch;                 // images per network evaluation; 0: 16
    dit_progress_fn progress;  // may be NULL
    void *progress_ctx;
    float cfg_interval[2];     // guide only at noise levels [lo, hi] of 0..1 (timestep / 1000, flow time for
                               // V_FLOW models; 1 = pure noise), conditional output elsewhere
                               // (dit_model_forward_cfg_interval); {0, 0}: every step
} dit_sample_options;

// One image to make: its class and its noise. The image depends only on (label, seed, index) and the
// options, not on what it is batched with: `dit sample --seed S` makes its k-th image as (S, k).
typedef struct dit_sample_item {
    int label;
    uint64_t seed;
    uint32_t index;
} dit_sample_item;

// The samples of n items: out (n, C, S, S) with C, S of the model (latents of a latent-space model,
// images in [-1, 1] of a pixel-space one). Thread-safety: one call at a time per model.
dit_status dit_sample(dit_model *m, const dit_sample_item *items, int n, const dit_sample_options *opt,
                      float *out);

typedef struct dit_vae dit_vae;   // see dit_vae.h
// The pixel layout of the model's images: through the VAE for a latent-space model (vae required), the
// samples themselves for a pixel-space one (1 or 3 channels; vae ignored).
dit_status dit_image_shape(const dit_model *m, const dit_vae *vae, int *height, int *width, int *channels);
// n samples of dit_sample to 8-bit images pixels (n, height, width, channels), row-major (as
// dit_image_shape): latents divided by the VAE's scaling_factor and decoded one at a time, then
// clamp(127.5 x + 128) as the reference sample_ddp.py.
dit_status dit_decode_images(const dit_model *m, dit_vae *vae, const float *samples, int n, uint8_t *pixels);

// PNG of 8-bit pixels (height, width, channels), channels 1, 3 or 4: to a file (written atomically), or to
// memory (*png malloc'd: release it with dit_free).
dit_status dit_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels);
dit_status dit_png_encode(const uint8_t *pixels, int width, int height, int channels, uint8_t **png,
                          size_t *size);
void dit_free(void *p);

// The library's version ("0.1.0"), and the number of threads the compute of the calling thread uses (OpenMP
// and OpenBLAS; n <= 0 keeps the default, all cores). Call it in the thread that will sample.
const char *dit_version(void);
void dit_set_num_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
