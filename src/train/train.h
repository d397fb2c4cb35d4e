// Training DiT in C: the IDDPM hybrid loss and its gradient (loss.c), AdamW + EMA + the reference weight
// init (optim.c), the recipe options (recipe.c; the flow-matching loss is diffusion/flow.h), datasets (data.c:
// IDX, image folders, latent caches), checkpoints (checkpoint.c) and the training step that ties them together
// (trainer.c). Reference: docs/reference.md §2.6, §3.1;
// notes: docs/training.md.
#ifndef DIT_TRAIN_H
#define DIT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "dit.h"
#include "dit_vae.h"
#include "diffusion/diffusion.h"
#include "models/dit_model.h"

// Philox streams of training (src/base/rng.h; 16 is the VAE posterior noise of `dit vae encode`).
// Counters: (element or 0, step or epoch, batch slot, stream); key = the run's seed.
enum {
    RNG_STREAM_CACHE_POSTERIOR = 16,  // cache-latents: posterior noise (counter step = image index)
    RNG_STREAM_TIMESTEP = 17,         // t of batch slot b at step s
    RNG_STREAM_LABEL_DROP = 18,       // label dropout coin of slot b at step s
    RNG_STREAM_NOISE = 19,            // the noise of q_sample for slot b at step s
    RNG_STREAM_SHUFFLE = 20,          // the permutation of epoch e (counter = (i, e, 0, 20))
    RNG_STREAM_FLIP = 21,             // horizontal flip / cached flip choice of slot b at step s
    RNG_STREAM_INIT = 22,             // weight initialisation (counter = (i, tensor index, 0, 22))
};

// A uniform 64-bit word of the Philox stream at counter (c0, c1, c2, stream) under key seed.
uint64_t train_rng_u64(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t stream);
// Uniform in [0, n) (multiply-high of the 64-bit word; bias < n / 2^64).
uint32_t train_rng_below(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t stream, uint32_t n);
// Uniform in [0, 1) with 53 bits.
double train_rng_uniform(uint64_t seed, uint32_t c0, uint32_t c1, uint32_t c2, uint32_t stream);

// ---- loss.c: training_losses with loss_type MSE (reference.md §2.6) ------------------------------

// x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, the float64 table entries cast to float32 first.
// t: (B) indices into d's tables; x0, noise, x_t: (B, per_sample).
void train_q_sample(const diffusion *d, const int *t, const float *x0, const float *noise, int B, int64_t per_sample,
                    float *x_t);

// The VB term of one sample in bits, with the model's mean built from `eps` (detached in the loss) and the
// log-variance from `v` (LEARNED_RANGE). t > 0: KL(q(x_{t-1}|x_t, x0) || p) averaged over the C*HW dims;
// t = 0: the discretized Gaussian decoder NLL of x0. dv (may be NULL) gets d vb / d v (C*HW floats,
// overwritten). x0, x_t, eps, v: (C*HW).
double train_vb_term(const diffusion *d, int t, const float *x0, const float *x_t, const float *eps, const float *v,
                     int64_t n, float *dv);

// The per-sample terms and the gradient of the batch loss mean_b(mse_b + vb_b) with respect to the model output.
// model_out: (B, 2C, HW) when d->var_type is LEARNED_RANGE (mse + vb), else (B, C, HW) (plain mse).
// mse, vb: (B) per-sample terms (vb = 0 for fixed variances); dout (may be NULL): like model_out.
// Returns the batch mean loss.
double train_loss(const diffusion *d, const int *t, const float *x0, const float *x_t, const float *noise,
                  const float *model_out, int B, int C, int HW, float *mse, float *vb, float *dout);
// The same for B samples that are part of a batch of batch_total (data-parallel shards): dout and the returned
// sum are scaled by 1 / batch_total, so the parts' gradients add up to the whole batch's.
double train_loss_part(const diffusion *d, const int *t, const float *x0, const float *x_t, const float *noise,
                       const float *model_out, int B, int batch_total, int C, int HW, float *mse, float *vb,
                       float *dout);
// The same with the mse term of sample b weighted by weight[b] (min-SNR; NULL = unweighted, the same bits);
// mse gets the weighted terms.
double train_loss_part_weighted(const diffusion *d, const int *t, const float *x0, const float *x_t,
                                const float *noise, const float *model_out, const float *weight, int B,
                                int batch_total, int C, int HW, float *mse, float *vb, float *dout);

// ---- optim.c --------------------------------------------------------------------------------------


// How t is drawn for each sample (recipe.c): UNIFORM = DiT (an integer in 0..T-1 for eps, u in [0, 1) for
// v-flow); LOGIT_NORMAL = sigmoid(m + s z) (SD3), for eps mapped to the index min(T - 1, floor(T u)).
typedef enum { TIME_UNIFORM = 0, TIME_LOGIT_NORMAL } train_time_sampling;
// LOSS_MIN_SNR: the eps mse of step t weighted by min(SNR_t, gamma) / SNR_t, SNR_t = abar_t / (1 - abar_t)
// (Hang et al. 2023); eps only (for v-flow the time density is the weighting: docs/training.md).
typedef enum { LOSS_UNWEIGHTED = 0, LOSS_MIN_SNR } train_loss_weight;
// The EMA decay of update n (0-based): CONSTANT = decay; WARMUP = min(decay, (1 + n) / (10 + n));
// POWER = min(decay, (1 - 1 / (n + 1))^(gamma + 1)) (EDM2's power-function EMA; the first update copies).
typedef enum { EMA_CONSTANT = 0, EMA_WARMUP, EMA_POWER } train_ema_schedule;
// The learning rate after the linear warm-up: CONSTANT, or a COSINE / LINEAR decay to lr_min at lr_decay_steps.
typedef enum { LR_CONSTANT = 0, LR_COSINE, LR_LINEAR } train_lr_schedule;

extern const char *const train_time_sampling_names[];   // "uniform", "logit-normal", NULL
extern const char *const train_loss_weight_names[];     // "none", "min-snr", NULL
extern const char *const train_ema_schedule_names[];    // "constant", "warmup", "power", NULL
extern const char *const train_lr_schedule_names[];     // "constant", "cosine", "linear", NULL
// The index of name in a NULL-terminated list, or -1.
int train_name_index(const char *const *names, const char *name);

typedef struct train_hparams {
    // Scalars are doubles, as the Python floats of the reference; the kernels cast them to float32 where torch does.
    double lr;             // 1e-4
    double beta1, beta2;   // 0.9, 0.999
    double eps;            // 1e-8
    double weight_decay;   // 0 (decoupled, torch.optim.AdamW)
    double grad_clip;      // 0 = off; else clip the global L2 norm to this (clip_grad_norm_)
    int warmup;            // 0 = off; else lr * min(1, (step + 1) / warmup), step 0-based
    double ema_decay;      // 0.9999
    int batch;
    double label_dropout;  // p of replacing a label by the null class (the model's class_dropout_prob)
    int hflip;             // 1: random horizontal flips of pixel data (latent caches always pick one of their two)
    // The recipe (recipe.c; docs/training.md "Recipe options"). All zero = DiT's recipe, bit for bit.
    dit_objective objective;    // EPS (IDDPM hybrid loss) or V_FLOW (flow matching, src/diffusion/flow.h)
    train_time_sampling time_sampling;
    double logit_mean, logit_std;   // TIME_LOGIT_NORMAL: t = sigmoid(mean + std z), z ~ N(0, 1)
    train_loss_weight loss_weight;
    double snr_gamma;           // LOSS_MIN_SNR: gamma
    train_ema_schedule ema_schedule;
    double ema_power;           // EMA_POWER: gamma of the power-function EMA
    train_lr_schedule lr_schedule;
    double lr_min;              // LR_COSINE / LR_LINEAR: the floor reached at lr_decay_steps
    int64_t lr_decay_steps;     // the decay's end (steps; set it when lr_schedule decays): dit train sets the run's
                                // --steps when the run starts, and --resume keeps it
} train_hparams;

void train_hparams_default(train_hparams *hp);

// The reference's initialize_weights (§1.9): xavier_uniform on every Linear and the patch conv (as [D, C p p]),
// biases 0, N(0, 0.02) for the label table and the timestep MLP weights, zero adaLN-Zero layers and final
// linear; pos_embed keeps its sin-cos table. Uniforms/normals from Philox stream RNG_STREAM_INIT.
void train_init_weights(dit_model *m, uint64_t seed);

// Global L2 norm of a gradient buffer (double accumulation).
double train_grad_norm(const float *g, size_t n);

// One AdamW step (torch.optim.AdamW semantics, float32 in torch's operation order) on a plain array of n
// floats. step = 1 for the first update (bias correction). lr is this step's rate (after warmup).
void train_adamw_update(float *params, const float *grads, float *adam_m, float *adam_v, size_t n,
                        const train_hparams *hp, double lr, int64_t step);
// ema = decay * ema + (1 - decay) * params over all n floats (pos_embed included, as update_ema).
void train_ema_update(float *ema, const float *params, size_t n, double decay);
// One AdamW step (train_adamw_update) on every entry of m's table except pos_embed (fixed, never updated even
// with weight decay), then ema = decay * ema + (1 - decay) * params over all of them, pos_embed included (as
// update_ema), taken in the same pass as the update: the same bits as train_ema_update after it. Returns the
// global L2 norm of grads, summed on the way (in fixed chunks per tensor: the same bits whatever the thread
// count, not train_grad_norm's), or -1 when out of memory for the chunk sums.
double train_adamw_ema_step(const dit_model *m, float *params, const float *grads, float *adam_m, float *adam_v,
                            const train_hparams *hp, double lr, int64_t step, float *ema, double ema_decay);

// ---- recipe.c: the schedules of a step ------------------------------------------------------------

// t of batch slot `slot` at step `step`, in [0, 1) (v-flow), from Philox stream RNG_STREAM_TIMESTEP: uniform,
// or logit-normal from two uniforms (counters 0 and 1) by Box-Muller.
double train_sample_time(const train_hparams *hp, uint64_t seed, uint32_t step, uint32_t slot);
// The eps timestep index (0..T-1) of that slot: uniform = train_rng_below(T) as DiT, else floor(T u) capped.
int train_sample_timestep(const train_hparams *hp, uint64_t seed, uint32_t step, uint32_t slot, int T);
// sigmoid(mean + std z), z = sqrt(-2 ln(1 - u1)) cos(2 pi u2): u1, u2 uniform in [0, 1).
double train_logit_normal(double u1, double u2, double mean, double std);
// min(SNR_t, gamma) / SNR_t with SNR_t = abar_t / (1 - abar_t) of d's table entry t.
double train_min_snr_weight(const diffusion *d, int t, double gamma);
// The learning rate of the update with 0-based index step: warm-up lr min(1, (step + 1) / warmup), then the
// decay from lr at step + 1 = warmup to lr_min at step + 1 = lr_decay_steps (cosine: lr_min + (lr - lr_min)
// (1 + cos(pi p)) / 2; linear: lr_min + (lr - lr_min) (1 - p); p clamped to [0, 1]).
double train_lr_at(const train_hparams *hp, int64_t step);
// The EMA decay of update n (0-based), by hp->ema_schedule.
double train_ema_decay_at(const train_hparams *hp, int64_t n);

// ---- data.c ---------------------------------------------------------------------------------------

typedef enum { DATA_PIXELS = 0, DATA_IMAGE_FOLDER, DATA_LATENT_CACHE } train_data_kind;

typedef struct train_data {
    train_data_kind kind;
    char *source;          // what --data said (recorded in checkpoints)
    int count;             // samples
    int channels, size;    // the shape of one training sample: (channels, size, size)
    int num_classes;
    char **class_names;    // num_classes names or NULL
    int *labels;           // (count)
    float *pixels;         // DATA_PIXELS: (count, C, S, S) in [-1, 1]
    char **paths;          // DATA_IMAGE_FOLDER: (count) image files
    float *latents;        // DATA_LATENT_CACHE: (count, 2, C, S, S): the image, then its flipped copy
    void *owner;           // backing storage (a tensor_file for caches)
} train_data;

// IDX (MNIST format, optionally gzip'd): images (magic 0x803, N x rows x cols u8) and labels (0x801, N u8).
// Validates magics, dimensions, counts and the exact length. pixels: (N, rows, cols); labels (N); malloc'd.
dit_status idx_read_images(const char *path, uint8_t **pixels, int *count, int *rows, int *cols);
dit_status idx_read_labels(const char *path, uint8_t **labels, int *count);

// --data for Fashion-MNIST/MNIST: "fashion-mnist" (Debian's dataset-fashion-mnist), a folder holding
// train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz], or the images file itself. image_size:
// 0 or the native size = as is; native + 4 (28 -> 32) = padded by 2 pixels each side with -1 (the
// background); anything else = PIL BICUBIC resize. Pixels scaled to [-1, 1] as ToTensor + Normalize(0.5).
dit_status train_data_open_idx(train_data *d, const char *spec, int image_size);
// An image folder: one subfolder per class (sorted names = labels 0..), PNG/JPEG files (sorted) inside.
// Each sample is read, center-cropped to image_size (ADM center_crop_arr) when a batch is assembled.
dit_status train_data_open_folder(train_data *d, const char *dir, int image_size);
// A latent cache written by `dit cache-latents` (safetensors: "latents" (N, 2, C, h, w) F32, "labels" (N) I32).
dit_status train_data_open_cache(train_data *d, const char *path);
// Any of the above: a .safetensors file = cache; "fashion-mnist", an IDX file or a folder with IDX files = IDX;
// another folder = image folder.
dit_status train_data_open(train_data *d, const char *spec, int image_size);
void train_data_free(train_data *d);

// The sample at position `index` of epoch `epoch` is perm_epoch[index]: a Fisher-Yates permutation from
// Philox (seed, epoch, RNG_STREAM_SHUFFLE). perm: (count).
void train_data_permutation(int count, uint64_t seed, int64_t epoch, int *perm);
// Write sample `i` into dst (C, S, S); flip = mirror horizontally (image folders, pixel sets) or take the
// cached flipped copy (latent caches).
dit_status train_data_get(const train_data *d, int i, int flip, float *dst);

// cache.c: encode every image of an image folder and its mirror image once: "latents" (N, 2, latent, S/8, S/8) =
// scaling_factor * (posterior sample, or the mean when use_mean; noise from Philox stream
// RNG_STREAM_CACHE_POSTERIOR, sample id 2 i + flip, step 0), "labels" (N) I32, class names and settings in
// __metadata__. progress (may be NULL) after each image.
dit_status train_cache_latents(dit_vae *vae, const train_data *folder, int use_mean, uint64_t seed, const char *path,
                               void (*progress)(void *ctx, int done, int total), void *ctx);

// ---- trainer.c: one optimizer step at a time -----------------------------------------------------

typedef struct train_stats {
    double loss, mse, vb;       // batch means
    double grad_norm;           // global L2 norm before clipping
    double lr;
} train_stats;

typedef struct trainer {
    dit_model *model;           // current weights (model->params)
    float *grads, *ema, *adam_m, *adam_v;   // model->total_floats each, the parameter layout
    train_hparams hp;
    uint64_t seed;
    diffusion diff;             // 1000 steps, linear, learned sigma as the model
    const train_data *data;     // not owned
    dit_train_activations *acts;
    int64_t step;               // optimizer steps done
    int64_t target_steps;       // the run's goal (recorded in checkpoints so a resume knows it)
    int64_t epoch, position;    // data cursor: next batch starts at perm_epoch[position]
    int steps_per_epoch;        // count / batch (the last partial batch is dropped, as drop_last)
    int *perm;                  // the permutation of `epoch`
    int64_t perm_epoch;
    // batch buffers
    float *x0, *noise, *x_t, *t_float, *out, *dout;
    float *t_flow, *weight;     // v-flow: t in [0, 1) of each slot; the loss weight of each slot (min-SNR)
    int *t, *y, *index;
    float *mse, *vb;
    // Data parallel (src/train/dist_train.c; 0 = off): the batch is computed as `shards` equal parts whose
    // gradients are summed in shard order 0, 1, ...; this process computes shards [shard_lo, shard_hi), the
    // other ranks of `comm` the rest. One process with shards = N gives the bits of N ranks.
    struct dist_comm *comm;     // NULL: one process
    int shards, shard_lo, shard_hi;
    float *shard_grads;         // a second gradient buffer when this process computes more than one shard
    double comm_seconds;        // time in communication during the last step
} trainer;

// A new run: weights from train_init_weights(seed), EMA = copy, moments 0, step 0.
trainer *trainer_create(const dit_config *cfg, const train_hparams *hp, uint64_t seed, const train_data *data);
// The same around an existing model whose params are the starting weights (taken over: freed with the trainer).
trainer *trainer_wrap(dit_model *m, const train_hparams *hp, uint64_t seed, const train_data *data);
void trainer_free(trainer *tr);
// Assemble the batch of the current step (data, flips, t, label dropout, noise) and run forward, loss,
// backward, clipping, AdamW and EMA. Advances step and the data cursor.
dit_status trainer_step(trainer *tr, train_stats *st);
// The model the EMA weights describe (a fresh dit_model; caller frees).
dit_model *trainer_ema_model(const trainer *tr);

// ---- dist_train.c: data-parallel training over a communicator (docs/distributed.md) ------------------

// Split each batch into `shards` parts (0: one per rank of comm) and take this rank's share of them: the batch
// must divide evenly, and over more than one rank shards must equal the number of ranks. Makes every rank's
// state (weights, EMA, moments, step, data cursor) rank 0's. comm may be NULL or single (shards alone).
dit_status trainer_set_shards(trainer *tr, struct dist_comm *comm, int shards);
// After the local shards' backward: sum the gradients over the ranks (rank order, bit-reproducible) and
// share the per-sample loss terms, so every rank takes the same optimizer step.
dit_status trainer_reduce_shards(trainer *tr);

// ---- checkpoint.c -------------------------------------------------------------------------------

// One safetensors file: the official keys (current weights), "ema." + key, "adam_m." + key, "adam_v." + key,
// and __metadata__: format, dit.config, dit.class_names, dit.train (JSON: step, epoch, position, seed,
// hyper-parameters, data source). Written atomically. `dit sample -m` reads the EMA weights of it.
dit_status checkpoint_save(const trainer *tr, const char *path);
// Restore a trainer from a checkpoint file; data may be NULL only when the caller does not step. data_spec
// (may be NULL) receives the recorded data source (malloc'd).
trainer *checkpoint_load(const char *path, const train_data *data, char **data_spec);
// The run's checkpoint folder layout: DIR/checkpoints/NNNNNNN.safetensors and DIR/checkpoints/latest (the
// file name of the newest complete checkpoint, replaced atomically after that file is complete).
// Save, point `latest` at it, then delete all but the newest `keep` checkpoints (keep <= 0: keep all).
dit_status checkpoint_save_run(const trainer *tr, const char *run_dir, int keep, char *saved_path, size_t n);
// The checkpoint to resume from: DIR may be a checkpoint file, a run folder or its checkpoints/ folder.
// Follows `latest`; when it is missing or unreadable, the newest checkpoint file that opens as safetensors.
dit_status checkpoint_find_latest(const char *dir, char *path, size_t n);

#endif
