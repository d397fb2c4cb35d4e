// `dit train`: DiT's train.py in C (AdamW, EMA, the IDDPM hybrid loss) on Fashion-MNIST/IDX files, image
// folders or latent caches, with atomic resumable checkpoints, a log line + log.jsonl + loss.svg, and sample
// grids of the EMA model. `dit cache-latents`: encode an image folder (and its mirror images) once with the VAE.
// Library side: src/train/train.h; notes: docs/training.md.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/fileio.h"
#include "cli/cli.h"
#include "dist/dist.h"
#include "cli/progress.h"
#include "diffusion/diffusion.h"
#include "image/grid.h"
#include "image/plot.h"
#include "io/tensors.h"
#include "train/train.h"

// The `small` preset (issue 16): measured against DiT's recipe in docs/time-to-quality.md.
#define SMALL_RECIPE_TEXT "v-flow, logit-normal(0, 1) t, EMA warm-up,\n                        --warmup 100, then cosine lr to lr/10 at --steps"

static void print_help(void) {
    printf("usage: dit train --data D [model] [options]\n"
           "\n"
           "data:\n"
           "  --data D              fashion-mnist | an IDX images file or a folder holding train-*-ubyte[.gz]\n"
           "                        | a folder of class subfolders (PNG/JPEG) | a latent cache (.safetensors)\n"
           "  --image-size N        pixels: IDX default 32 (28 padded by 2 with the background -1), other\n"
           "                        sizes resized (bicubic); image folders: the center-crop size (required)\n"
           "  --no-flip             no random horizontal flips (pixel data; caches always pick one of two).\n"
           "                        Use it where objects face one way (Fashion-MNIST's shoes all point left:\n"
           "                        flipping half of its real images costs a Frechet distance of 15)\n"
           "model (new runs):\n"
           "  --config NAME         a named config (DiT-S/2 ...) at the data's size and channels\n"
           "  --depth N --hidden D --heads H --patch P   a custom one (default 6, 256, 4, 4)\n"
           "  --block B             the block design: adaln-zero (default), adaln, cross-attention, in-context\n"
           "                        (the paper's Fig. 5; docs/reference.md 1.13)\n"
           "  --in-channels C --num-classes K            checked against / widened beyond the data\n"
           "  --learn-sigma 0|1     learned variance + VB loss (default 1 for eps, 0 for v-flow, where the\n"
           "                        extra channels would be ignored), or fixed variance + MSE\n"
           "  --class-dropout P     label dropout to the null class (default 0.1; 0 = no CFG)\n"
           "optimisation:\n"
           "  --batch N (32)  --lr X (1e-4)  --weight-decay X (0)  --grad-clip X (0 = off)\n"
           "  --warmup N (0)  --ema X (0.9999)  --steps N | --epochs N  --seed S (0)\n"
           "recipe (docs/training.md \"Recipe options\"; the default is DiT's, bit for bit):\n"
           "  --recipe dit|small    a preset; the flags below override its parts. small: for small data, chosen\n"
           "                        by measurement (docs/time-to-quality.md): " SMALL_RECIPE_TEXT "\n"
           "  --objective eps|v-flow    eps: DiT's IDDPM loss (default); v-flow: flow matching (SiT), velocity\n"
           "                        of x_t = (1 - t) x0 + t noise; dit sample then uses flow-heun etc.\n"
           "  --time-sampling uniform|logit-normal  --logit-mean M (0)  --logit-std S (1)\n"
           "  --loss-weight none|min-snr  --snr-gamma G (5)   min-SNR-gamma weights the eps mse (eps only)\n"
           "  --ema-schedule constant|warmup|power  --ema-power G (6.94)   warmup: decay min(--ema,\n"
           "                        (1+n)/(10+n)); power: min(--ema, (1-1/(n+1))^(G+1)), n = updates so far\n"
           "  --lr-schedule constant|cosine|linear  --lr-min X (lr/10)   after --warmup, decay to X at the\n"
           "                        run's --steps (fixed when the run starts)\n"
           "output:\n"
           "  -o, --output DIR      run folder (default runs/<model>-<seed>)\n"
           "  --ckpt-every N (1000) --keep K (3)  --log-every N (100)\n"
           "  --sample-every N      a labelled grid of EMA samples (pixel models) every N steps (0 = off)\n"
           "  --sample-steps N (50 DDIM; v-flow: Heun N/2)  --sample-cfg S (4 with a null class)\n"
           "  --resume DIR          continue a run bit-identically (its model and hyper-parameters; the\n"
           "                        original flags may be repeated, other values are refused; --lr X /\n"
           "                        --ema X given with it change those from the checkpoint on)\n"
           "  -t, --threads N\n"
           CLI_PRECISION_HELP
           "multi-process (docs/distributed.md):\n"
           "  mpirun -np N dit train ...   N ranks share each --batch (batch/N each), gradients summed in rank\n"
           "                        order; rank 0 writes the log, grids and checkpoints\n"
           "  --grad-shards N       one process computing the batch as N shards summed as N ranks do (the\n"
           "                        same bits as mpirun -np N)\n");
}

// ---- log.jsonl and loss.svg --------------------------------------------------------------------------

typedef struct {
    double step, loss, mse, vb;
} log_point;

static void write_svg(const char *path, const log_point *pts, int n) {
    if (n < 1) return;
    double *x = dit_malloc(4 * (size_t)n * sizeof(double)), *loss = x + n, *mse = x + 2 * n, *vb = x + 3 * n;
    for (int i = 0; i < n; i++) x[i] = pts[i].step, loss[i] = pts[i].loss, mse[i] = pts[i].mse, vb[i] = pts[i].vb;
    const plot_series series[3] = {{"loss", "black", x, loss, n, 0}, {"mse", "steelblue", x, mse, n, 0},
                                   {"vb", "darkorange", x, vb, n, 0}};
    const plot_panel panel = {NULL, "step", NULL, 1, series, 3};
    plot_write_svg(path, &panel, 1);   // a failed plot does not stop training
    free(x);
}

// Keep the log entries up to `step` (a resumed run rewrites what came after its checkpoint).
static log_point *load_log(const char *path, int64_t step, int *n) {
    *n = 0;
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    log_point *pts = NULL;
    char line[1024];
    char *kept = NULL;
    size_t kept_len = 0;
    while (fgets(line, sizeof line, f)) {
        log_point p = {0};
        if (sscanf(line, "{\"step\": %lf, \"loss\": %lf, \"mse\": %lf, \"vb\": %lf", &p.step, &p.loss, &p.mse, &p.vb) != 4 ||
            p.step > (double)step)
            continue;
        pts = dit_xrealloc(pts, (*n + 1) * sizeof *pts);
        pts[(*n)++] = p;
        size_t len = strlen(line);
        kept = dit_xrealloc(kept, kept_len + len + 1);
        memcpy(kept + kept_len, line, len + 1);
        kept_len += len;
    }
    fclose(f);
    atomic_file a;
    if (atomic_file_open(&a, path) == DIT_OK) {
        if (kept_len) fwrite(kept, 1, kept_len, a.f);
        atomic_file_commit(&a);
    }
    free(kept);
    return pts;
}

// ---- sample grids ------------------------------------------------------------------------------------

typedef struct {
    dit_model *model;
    const int *labels;
    float cfg_scale;
    int guide_all;   // v-flow: guide every velocity channel
} denoise_ctx;

static dit_status denoise(void *ctx, const float *x, const float *t, int B, float *out) {
    denoise_ctx *d = ctx;
    return d->cfg_scale > 1.0f ? dit_model_forward_cfg(d->model, x, t, d->labels, B, d->cfg_scale, d->guide_all, out)
                               : dit_model_forward(d->model, x, t, d->labels, B, out);
}

static dit_status write_samples(const trainer *tr, const char *path, int steps, float cfg_scale, uint64_t seed) {
    const dit_config *c = &tr->model->cfg;
    const int classes = c->num_classes < 10 ? c->num_classes : 10, per_class = 8, n = classes * per_class;
    const int C = c->in_channels, S = c->input_size;
    dit_model *ema = trainer_ema_model(tr);
    if (!ema) return DIT_ERR;
    float *x = dit_xmalloc((size_t)n * C * S * S * sizeof(float));
    int *labels = dit_xmalloc(n * sizeof(int));
    for (int k = 0; k < n; k++) labels[k] = k / per_class;
    diffusion diff = {0};
    char respacing[32];
    snprintf(respacing, sizeof respacing, "%d", steps);
    // eps: DDIM with `steps` steps; v-flow: Heun with steps / 2 (the same number of network evaluations)
    const int flow = tr->hp.objective == DIT_OBJECTIVE_V_FLOW;
    diffusion_options dopt = {.respacing = flow ? "" : respacing, .learn_sigma = c->learn_sigma};
    dit_status st = diffusion_init(&diff, &dopt);
    if (!st) {
        diffusion_initial_noise(x, n, (int64_t)C * S * S, seed, 0);
        denoise_ctx ctx = {ema, labels, c->class_dropout_prob > 0 ? cfg_scale : 1.0f, flow};
        sampler_options sopt = {.kind = flow ? SAMPLER_HEUN : SAMPLER_DDIM, .seed = seed,
                                .flow_steps = steps / 2 > 0 ? steps / 2 : 1};
        st = diffusion_sample(&diff, &sopt, denoise, &ctx, n, C, S * S, x);
    }
    if (!st) {
        uint8_t *pixels = dit_xmalloc((size_t)n * C * S * S);
        to_uint8_nhwc(pixels, x, n, C, S, S);
        char **row_labels = dit_xcalloc(classes, sizeof *row_labels);
        for (int r = 0; r < classes; r++) {
            const char *name = dit_model_class_name(ema, r);
            char text[96];
            snprintf(text, sizeof text, name ? "%d %s" : "class %d", r, name);
            row_labels[r] = dit_xstrdup(text);
        }
        rgb_image grid;
        st = grid_compose(&grid, pixels, n, S, S, C, per_class, (const char *const *)row_labels, 2);
        if (!st) {
            st = png_write(path, grid.pixels, grid.width, grid.height, 3);
            free(grid.pixels);
        }
        for (int r = 0; r < classes; r++) free(row_labels[r]);
        free(row_labels);
        free(pixels);
    }
    diffusion_free(&diff);
    free(x);
    free(labels);
    dit_model_free(ema);
    return st;
}

// ---- the command -------------------------------------------------------------------------------------

static int make_dirs(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) break;
            *p = '/';
        }
    if (mkdir(buf, 0777) == 0 || errno == EEXIST) return 1;
    fprintf(stderr, "dit: %s: cannot create the folder (%s)\n", path, strerror(errno));
    return 0;
}

static void format_eta(char *buf, size_t n, double s) {
    int v = (int)(s + 0.5);
    if (v >= 3600) snprintf(buf, n, "%dh%02dm", v / 3600, v / 60 % 60);
    else if (v >= 60) snprintf(buf, n, "%dm%02ds", v / 60, v % 60);
    else snprintf(buf, n, "%ds", v);
}

int cmd_train(int argc, char **argv) {
    const char *data_spec = NULL, *model_name = NULL, *out_dir = NULL, *resume = NULL;
    int image_size = 0, depth = 6, hidden = 256, heads = 0, patch = 4, in_channels = 0, num_classes = 0;
    int learn_sigma = 1, steps = 0, epochs = 0, ckpt_every = 1000, keep = 3, log_every = 100, sample_every = 0;
    int sample_steps = 50, threads = 0, seed = 0, no_flip = 0;
    dit_precision precision = DIT_PRECISION_AUTO;
    int lr_set = 0, ema_set = 0;   // the two settings a resumed run may change (e.g. to anneal)
    // Which model/optimisation flags were given: a resumed run accepts them when they equal the checkpoint's.
    int depth_set = 0, hidden_set = 0, heads_set = 0, patch_set = 0, size_set = 0, channels_set = 0;
    int classes_set = 0, sigma_set = 0, dropout_set = 0, batch_set = 0, decay_set = 0, clip_set = 0;
    int warmup_set = 0, seed_set = 0, block_set = 0;
    dit_block_kind block = DIT_BLOCK_ADALN_ZERO;
    int grad_shards = 0;           // 0: one shard per rank (src/train/dist_train.c)
    // the recipe (src/train/recipe.c): a preset, then the named choices and numbers given
    const char *recipe = NULL, *objective_name = NULL, *time_name = NULL, *weight_name = NULL, *ema_name = NULL;
    const char *lr_name = NULL;
    int logit_mean_set = 0, logit_std_set = 0, gamma_set = 0, power_set = 0, lr_min_set = 0;
    float class_dropout = 0.1f, sample_cfg = 4.0f, f;
    train_hparams hp;
    train_hparams_default(&hp);
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (!strcmp(arg, "--no-flip")) no_flip = 1;
        else if (cli_take(&a, NULL, "--data")) data_spec = a.value;
        else if (cli_take(&a, NULL, "--config")) model_name = a.value;
        else if (cli_take(&a, NULL, "--model")) {   // the old spelling: --model takes a file everywhere else
            fprintf(stderr, "dit: note: --model NAME is deprecated for a named config: use --config %s\n", a.value);
            model_name = a.value;
        }
        else if (cli_take_int(&a, NULL, "--depth", 1, 1000, &depth)) depth_set = 1;
        else if (cli_take_int(&a, NULL, "--hidden", 4, 65536, &hidden)) hidden_set = 1;
        else if (cli_take_int(&a, NULL, "--heads", 1, 4096, &heads)) heads_set = 1;
        else if (cli_take_int(&a, NULL, "--patch", 1, 64, &patch)) patch_set = 1;
        else if (cli_take(&a, NULL, "--block")) {
            if (dit_block_parse(a.value, &block) != DIT_OK) return cli_usage_error("train: --block: %s", dit_last_error());
            block_set = 1;
        }
        else if (cli_take_int(&a, NULL, "--image-size", 2, 4096, &image_size)) size_set = 1;
        else if (cli_take_int(&a, NULL, "--in-channels", 1, 64, &in_channels)) channels_set = 1;
        else if (cli_take_int(&a, NULL, "--num-classes", 1, 1000000, &num_classes)) classes_set = 1;
        else if (cli_take_int(&a, NULL, "--learn-sigma", 0, 1, &learn_sigma)) sigma_set = 1;
        else if (cli_take_float(&a, NULL, "--class-dropout", &class_dropout)) dropout_set = 1;
        else if (cli_take_int(&a, NULL, "--batch", 1, 65536, &hp.batch)) batch_set = 1;
        // The doubles keep the decimal value exactly as Python would (the float parse only checks it).
        else if (cli_take_float(&a, NULL, "--lr", &f)) hp.lr = strtod(a.value, NULL), lr_set = 1;
        else if (cli_take_float(&a, NULL, "--weight-decay", &f)) hp.weight_decay = strtod(a.value, NULL), decay_set = 1;
        else if (cli_take_float(&a, NULL, "--grad-clip", &f)) hp.grad_clip = strtod(a.value, NULL), clip_set = 1;
        else if (cli_take_int(&a, NULL, "--warmup", 0, 1 << 30, &hp.warmup)) warmup_set = 1;
        else if (cli_take_float(&a, NULL, "--ema", &f)) hp.ema_decay = strtod(a.value, NULL), ema_set = 1;
        else if (cli_take_int(&a, NULL, "--steps", 1, 2000000000, &steps)) continue;
        else if (cli_take_int(&a, NULL, "--epochs", 1, 1000000, &epochs)) continue;
        else if (cli_take_int(&a, NULL, "--ckpt-every", 1, 2000000000, &ckpt_every)) continue;
        else if (cli_take_int(&a, NULL, "--keep", 0, 1000000, &keep)) continue;
        else if (cli_take_int(&a, NULL, "--log-every", 1, 2000000000, &log_every)) continue;
        else if (cli_take_int(&a, NULL, "--sample-every", 0, 2000000000, &sample_every)) continue;
        else if (cli_take_int(&a, NULL, "--sample-steps", 1, 1000, &sample_steps)) continue;
        else if (cli_take_float(&a, NULL, "--sample-cfg", &sample_cfg)) continue;
        else if (cli_take(&a, NULL, "--recipe")) recipe = a.value;
        else if (cli_take(&a, NULL, "--objective")) objective_name = a.value;
        else if (cli_take(&a, NULL, "--time-sampling")) time_name = a.value;
        else if (cli_take(&a, NULL, "--loss-weight")) weight_name = a.value;
        else if (cli_take(&a, NULL, "--ema-schedule")) ema_name = a.value;
        else if (cli_take(&a, NULL, "--lr-schedule")) lr_name = a.value;
        else if (cli_take_float(&a, NULL, "--logit-mean", &f)) hp.logit_mean = strtod(a.value, NULL), logit_mean_set = 1;
        else if (cli_take_float(&a, NULL, "--logit-std", &f)) hp.logit_std = strtod(a.value, NULL), logit_std_set = 1;
        else if (cli_take_float(&a, NULL, "--snr-gamma", &f)) hp.snr_gamma = strtod(a.value, NULL), gamma_set = 1;
        else if (cli_take_float(&a, NULL, "--ema-power", &f)) hp.ema_power = strtod(a.value, NULL), power_set = 1;
        else if (cli_take_float(&a, NULL, "--lr-min", &f)) hp.lr_min = strtod(a.value, NULL), lr_min_set = 1;
        else if (cli_take(&a, NULL, "--resume")) resume = a.value;
        else if (cli_take(&a, "-o", "--output")) out_dir = a.value;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take_precision(&a, &precision)) continue;
        else if (cli_take_int(&a, NULL, "--grad-shards", 1, 65536, &grad_shards)) continue;
        else if (cli_take_int(&a, "-s", "--seed", 0, 2147483647, &seed)) seed_set = 1;
        else if (a.failed) return 2;
        else return cli_usage_error("train: unknown option '%s' (see dit train --help)", arg);
    }
    if (steps && epochs) return cli_usage_error("train: give --steps or --epochs, not both");
    if (!resume && !data_spec) return cli_usage_error("train: --data is required (see dit train --help)");
    if (!resume && !steps && !epochs) return cli_usage_error("train: give --steps N or --epochs N");
    if (hp.lr <= 0 || hp.weight_decay < 0 || hp.grad_clip < 0 || hp.ema_decay < 0 || hp.ema_decay > 1)
        return cli_usage_error("train: --lr must be > 0; --weight-decay, --grad-clip >= 0; --ema in [0, 1]");
    if (class_dropout < 0 || class_dropout >= 1) return cli_usage_error("--class-dropout: expected a value in [0, 1)");
    hp.hflip = !no_flip;
    // The preset first, then each named choice given (a resumed run checks the given ones against its checkpoint)
    if (recipe && strcmp(recipe, "dit") && strcmp(recipe, "small"))
        return cli_usage_error("--recipe: expected dit or small, got '%s'", recipe);
    if (recipe && !strcmp(recipe, "small")) {
        hp.objective = DIT_OBJECTIVE_V_FLOW;
        hp.time_sampling = TIME_LOGIT_NORMAL;
        hp.ema_schedule = EMA_WARMUP;
        hp.lr_schedule = LR_COSINE;
        if (!warmup_set) hp.warmup = 100;   // reach the peak lr within the first minutes
    }
    int choice;
    if (objective_name && dit_objective_parse(objective_name, &hp.objective))
        return cli_usage_error("--objective: expected eps or v-flow, got '%s'", objective_name);
    const struct { const char *flag, *value; const char *const *names; int *out; } choices[] = {
        {"--time-sampling", time_name, train_time_sampling_names, (int *)&hp.time_sampling},
        {"--loss-weight", weight_name, train_loss_weight_names, (int *)&hp.loss_weight},
        {"--ema-schedule", ema_name, train_ema_schedule_names, (int *)&hp.ema_schedule},
        {"--lr-schedule", lr_name, train_lr_schedule_names, (int *)&hp.lr_schedule},
    };
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++) {
        if (!choices[i].value) continue;
        if ((choice = train_name_index(choices[i].names, choices[i].value)) < 0)
            return cli_usage_error("%s: unknown choice '%s' (see dit train --help)", choices[i].flag, choices[i].value);
        *choices[i].out = choice;
    }
    if (hp.objective == DIT_OBJECTIVE_V_FLOW && hp.loss_weight != LOSS_UNWEIGHTED)
        return cli_usage_error("--loss-weight min-snr is for --objective eps; for v-flow the time density is the "
                               "weighting (--time-sampling logit-normal)");
    if (hp.logit_std <= 0 || hp.snr_gamma <= 0 || hp.ema_power <= 0 || hp.lr_min < 0 || (!resume && hp.lr_min > hp.lr))
        return cli_usage_error("train: --logit-std, --snr-gamma, --ema-power must be > 0; --lr-min in [0, --lr]");
    if (!lr_min_set && !resume) hp.lr_min = hp.lr / 10;
    if (!sigma_set && hp.objective == DIT_OBJECTIVE_V_FLOW) learn_sigma = 0;   // the velocity needs C channels
    cli_set_threads(threads);

    int status = 1;
    dist_comm *comm = dist_world();
    const int root = dist_is_root(comm);   // rank 0 alone writes the log, grids and checkpoints
    train_data data = {0};
    trainer *tr = NULL;
    char *recorded_data = NULL, run_dir[4300], path[4400], ckpt_path[4200];
    log_point *pts = NULL;
    int npts = 0;
    FILE *log = NULL;
    if (resume) {
        if (checkpoint_find_latest(resume, ckpt_path, sizeof ckpt_path)) goto fail;
        // the data source is needed before the trainer: read it from the checkpoint first
        trainer *probe = checkpoint_load(ckpt_path, NULL, &recorded_data);
        if (!probe) goto fail;
        const int recorded_size = probe->model->cfg.input_size;
        trainer_free(probe);
        if (!data_spec) data_spec = recorded_data;
        if (!data_spec) {
            fprintf(stderr, "dit: %s does not record its data: pass --data\n", ckpt_path);
            goto done;
        }
        if (train_data_open(&data, data_spec, recorded_size)) goto fail;
        if (!(tr = checkpoint_load(ckpt_path, &data, NULL))) goto fail;
        // The original command's model and optimisation flags may be repeated; a different value is refused.
        const dit_config *rc = &tr->model->cfg;
        dit_config named = {0};
        if (model_name && dit_config_named(&named, model_name, 256)) goto fail;
        const struct { int given; const char *flag; double value, recorded; } same[] = {
            {model_name != NULL, "--config (depth)", named.depth, rc->depth},
            {model_name != NULL, "--config (hidden size)", named.hidden_size, rc->hidden_size},
            {model_name != NULL, "--config (heads)", named.num_heads, rc->num_heads},
            {model_name != NULL, "--config (patch)", named.patch_size, rc->patch_size},
            {depth_set, "--depth", depth, rc->depth},
            {hidden_set, "--hidden", hidden, rc->hidden_size},
            {heads_set, "--heads", heads, rc->num_heads},
            {patch_set, "--patch", patch, rc->patch_size},
            // pixel data trains at its image size; a latent cache fixes its own (the flag has no effect there)
            {size_set, "--image-size", image_size, data.kind != DATA_LATENT_CACHE ? rc->input_size : image_size},
            {channels_set, "--in-channels", in_channels, rc->in_channels},
            {classes_set, "--num-classes", num_classes, rc->num_classes},
            {sigma_set, "--learn-sigma", learn_sigma, rc->learn_sigma},
            {dropout_set, "--class-dropout", class_dropout, rc->class_dropout_prob},
            {batch_set, "--batch", hp.batch, tr->hp.batch},
            {decay_set, "--weight-decay", hp.weight_decay, tr->hp.weight_decay},
            {clip_set, "--grad-clip", hp.grad_clip, tr->hp.grad_clip},
            {warmup_set, "--warmup", hp.warmup, tr->hp.warmup},
            {seed_set, "--seed", seed, (double)tr->seed},
            {no_flip, "--no-flip (random flips 0/1)", 0, tr->hp.hflip},
            {recipe || objective_name, "--objective (0 eps, 1 v-flow)", hp.objective, tr->hp.objective},
            {recipe || time_name, "--time-sampling (0 uniform, 1 logit-normal)", hp.time_sampling, tr->hp.time_sampling},
            {recipe || weight_name, "--loss-weight (0 none, 1 min-snr)", hp.loss_weight, tr->hp.loss_weight},
            {recipe || ema_name, "--ema-schedule (0 constant, 1 warmup, 2 power)", hp.ema_schedule, tr->hp.ema_schedule},
            {recipe || lr_name, "--lr-schedule (0 constant, 1 cosine, 2 linear)", hp.lr_schedule, tr->hp.lr_schedule},
            {logit_mean_set, "--logit-mean", hp.logit_mean, tr->hp.logit_mean},
            {logit_std_set, "--logit-std", hp.logit_std, tr->hp.logit_std},
            {gamma_set, "--snr-gamma", hp.snr_gamma, tr->hp.snr_gamma},
            {power_set, "--ema-power", hp.ema_power, tr->hp.ema_power},
            {lr_min_set, "--lr-min", hp.lr_min, tr->hp.lr_min},
        };
        for (size_t i = 0; i < sizeof same / sizeof same[0]; i++)
            if (same[i].given && same[i].value != same[i].recorded) {
                fprintf(stderr, "dit: %s %g conflicts with the checkpoint %s (%g): --resume continues the recorded "
                                "run; only --lr and --ema may change it\n", same[i].flag, same[i].value, ckpt_path,
                        same[i].recorded);
                goto done;
            }
        if (block_set && block != rc->block) {
            fprintf(stderr, "dit: --block %s conflicts with the checkpoint %s (%s): --resume continues the recorded run\n",
                    dit_block_name(block), ckpt_path, dit_block_name(rc->block));
            goto done;
        }
        if (lr_set && hp.lr != tr->hp.lr) {
            if (root) fprintf(stderr, "dit: --lr %g replaces the recorded %g from step %lld on\n", hp.lr, tr->hp.lr,
                    (long long)tr->step);
            tr->hp.lr = hp.lr;
        }
        if (ema_set && hp.ema_decay != tr->hp.ema_decay) {
            if (root) fprintf(stderr, "dit: --ema %g replaces the recorded %g from step %lld on\n", hp.ema_decay,
                    tr->hp.ema_decay, (long long)tr->step);
            tr->hp.ema_decay = hp.ema_decay;
        }
        if (out_dir) snprintf(run_dir, sizeof run_dir, "%s", out_dir);
        else {
            // DIR, DIR/checkpoints or DIR/checkpoints/NNN.safetensors -> DIR
            snprintf(run_dir, sizeof run_dir, "%s", ckpt_path);
            for (int up = 0; up < 2; up++) {
                char *slash = strrchr(run_dir, '/');
                if (slash) *slash = 0;
                else snprintf(run_dir, sizeof run_dir, ".");
            }
        }
        if (root) fprintf(stderr, "dit: resuming %s at step %lld (epoch %lld, position %lld)\n", ckpt_path, (long long)tr->step,
                (long long)tr->epoch, (long long)tr->position);
    } else {
        const int default_size = 0;
        if (train_data_open(&data, data_spec, image_size ? image_size : default_size)) goto fail;
        if (data.kind == DATA_PIXELS && !image_size && data.size == 28) {
            // the default for 28x28 IDX data: pad to 32 (patch sizes 2, 4, 8 divide it)
            train_data_free(&data);
            if (train_data_open(&data, data_spec, 32)) goto fail;
        }
        dit_config cfg;
        if (model_name) {
            if (dit_config_named(&cfg, model_name, 256)) goto fail;
        } else {
            cfg = (dit_config){.patch_size = patch, .hidden_size = hidden, .depth = depth, .mlp_ratio = 4.0f};
            cfg.num_heads = heads ? heads : (dit_heads_for_hidden(hidden) ? dit_heads_for_hidden(hidden) : 4);
        }
        cfg.input_size = data.size;
        cfg.block = block;
        if (in_channels && in_channels != data.channels) {
            fprintf(stderr, "dit: --in-channels %d, but %s has %d channels\n", in_channels, data_spec, data.channels);
            goto done;
        }
        cfg.in_channels = data.channels;
        if (num_classes && num_classes < data.num_classes) {
            fprintf(stderr, "dit: --num-classes %d, but %s has %d classes\n", num_classes, data_spec, data.num_classes);
            goto done;
        }
        cfg.num_classes = num_classes ? num_classes : data.num_classes;
        cfg.class_dropout_prob = class_dropout;
        cfg.learn_sigma = learn_sigma;
        hp.label_dropout = class_dropout;
        if (dit_config_validate(&cfg)) goto fail;
        if (!(tr = trainer_create(&cfg, &hp, (uint64_t)seed, &data))) goto fail;
        if (data.class_names && cfg.num_classes == data.num_classes &&
            dit_model_set_class_names(tr->model, (const char *const *)data.class_names, data.num_classes))
            goto fail;
        if (out_dir) snprintf(run_dir, sizeof run_dir, "%s", out_dir);
        else {
            snprintf(run_dir, sizeof run_dir, "runs/%s-%d", model_name ? model_name : "dit", seed);
            for (char *p = run_dir + 5; *p; p++)
                if (*p == '/') *p = '-';
        }
    }
    if (trainer_set_shards(tr, comm, grad_shards)) goto fail;
    if (steps) tr->target_steps = steps;
    else if (epochs) tr->target_steps = (int64_t)epochs * tr->steps_per_epoch;
    if (!resume) tr->hp.lr_decay_steps = tr->target_steps;   // the schedule's end stays where the run began it
    if (tr->target_steps <= tr->step) {
        fprintf(stderr, "dit: the run is at step %lld already; give a larger --steps\n", (long long)tr->step);
        status = tr->target_steps ? 0 : 1;
        goto done;
    }
    if (root) {
        if (!make_dirs(run_dir)) goto done;
        snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
        pts = load_log(path, tr->step, &npts);
        if (!(log = fopen(path, "a"))) {
            fprintf(stderr, "dit: %s: cannot open for appending (%s)\n", path, strerror(errno));
            goto done;
        }
    }
    const dit_config *c = &tr->model->cfg;
    const int pixel = c->in_channels == 1 || c->in_channels == 3;
    if (!cli_apply_precision(tr->model, precision)) goto done;
    if (root) fprintf(stderr, "dit: training %s (%s block, %s, %s, %.2fM params, %dx%dx%d, %d classes) on %s (%d samples, "
                    "%d steps/epoch), batch %d, lr %g, %d threads, %s -> %s\n",
            cli_config_name(c), dit_block_name(c->block), dit_objective_name(tr->hp.objective),
            c->learn_sigma ? "learned sigma" : "fixed sigma",
            dit_config_param_count(c) / 1e6, c->in_channels, c->input_size, c->input_size, c->num_classes, data.source,
            data.count, tr->steps_per_epoch, tr->hp.batch, tr->hp.lr, cli_threads(),
            dit_compute_path(dit_model_precision(tr->model)), run_dir);
    char time_text[64];
    snprintf(time_text, sizeof time_text, tr->hp.time_sampling == TIME_LOGIT_NORMAL ? "logit-normal(%g, %g)" : "uniform",
             tr->hp.logit_mean, tr->hp.logit_std);
    if (root)
        fprintf(stderr, "dit: recipe: t %s, loss weight %s, EMA %s (decay %g), lr %s (warm-up %d%s)\n", time_text,
                train_loss_weight_names[tr->hp.loss_weight], train_ema_schedule_names[tr->hp.ema_schedule],
                tr->hp.ema_decay, train_lr_schedule_names[tr->hp.lr_schedule], tr->hp.warmup,
                tr->hp.lr_schedule == LR_CONSTANT ? "" : ", then to --lr-min at --steps");
    if (root && dist_size(comm) > 1)
        fprintf(stderr, "dit: %d ranks (%s), %d samples each per step\n", dist_size(comm), comm->ops->name,
                tr->hp.batch / dist_size(comm));
    // Achieved rate and MFU: a training step costs about 3 forwards (the backward twice the forward's
    // products), 2 flops per multiply-add; the peak is this machine's GEMM rate in the run's precision,
    // measured now (a fraction of a second).
    const double step_flops = 3.0 * 2.0 * dit_config_gmacs(c) * 1e9 * tr->hp.batch;
    const double peak_gflops = dit_measure_gemm_gflops(dit_model_precision(tr->model), 1024, 1024, 1024);
    if (root)
        fprintf(stderr, "dit: %.2f GFLOP per step; peak GEMM rate here in %s: %.0f GFLOP/s (1024^3)\n", step_flops / 1e9,
                dit_precision_name(dit_model_precision(tr->model)), peak_gflops);
    if (root && sample_every && !pixel) fprintf(stderr, "dit: --sample-every: skipped for latent models (decode with dit sample --vae)\n");
    double window_loss = 0, window_mse = 0, window_vb = 0, window_norm = 0, window_comm = 0;
    double window_start = now_seconds();
    int window = 0;
    const double run_start = now_seconds();
    const int64_t first_step = tr->step;
    while (tr->step < tr->target_steps) {
        train_stats st;
        if (trainer_step(tr, &st)) goto fail;
        window_loss += st.loss, window_mse += st.mse, window_vb += st.vb, window_norm += st.grad_norm, window++;
        window_comm += tr->comm_seconds;
        const int64_t s = tr->step;
        if (!root) continue;
        if (s % log_every == 0 || s == tr->target_steps) {
            const double now = now_seconds(), dt = now - window_start;
            const double img_s = dt > 0 ? (double)window * tr->hp.batch / dt : 0;
            const double per_step = (now - run_start) / (double)(s - first_step);
            char eta[32];
            format_eta(eta, sizeof eta, per_step * (double)(tr->target_steps - s));
            log_point p = {(double)s, window_loss / window, window_mse / window, window_vb / window};
            const double tflops = dt > 0 ? step_flops * window / dt / 1e12 : 0;
            const double mfu = peak_gflops > 0 ? tflops * 1e3 / peak_gflops : 0;
            char comm_text[48] = "";
            if (dist_size(comm) > 1)
                snprintf(comm_text, sizeof comm_text, "  comm %.1f ms/step", 1e3 * window_comm / window);
            fprintf(stderr, "step %lld/%lld  loss %.4f (mse %.4f, vb %.4f)  grad norm %.3g  %.1f img/s  %.3f TFLOP/s  "
                            "MFU %.0f%%%s  ETA %s\n",
                    (long long)s, (long long)tr->target_steps, p.loss, p.mse, p.vb, window_norm / window, img_s, tflops,
                    100 * mfu, comm_text, eta);
            fprintf(log, "{\"step\": %lld, \"loss\": %.6g, \"mse\": %.6g, \"vb\": %.6g, \"grad_norm\": %.6g, "
                         "\"lr\": %.6g, \"img_per_s\": %.4g, \"tflops\": %.4g, \"mfu\": %.4g, \"precision\": \"%s\", "
                         "\"epoch\": %lld, \"elapsed_s\": %.3f, \"ranks\": %d, \"comm_s_per_step\": %.6g}\n",
                    (long long)s, p.loss, p.mse, p.vb, window_norm / window, st.lr, img_s, tflops, mfu,
                    dit_precision_name(dit_model_precision(tr->model)), (long long)tr->epoch, now - run_start,
                    dist_size(comm), window_comm / window);
            fflush(log);
            pts = dit_xrealloc(pts, (npts + 1) * sizeof *pts);
            pts[npts++] = p;
            snprintf(path, sizeof path, "%s/loss.svg", run_dir);
            write_svg(path, pts, npts);
            window_loss = window_mse = window_vb = window_norm = window_comm = 0, window = 0;
            window_start = now_seconds();
        }
        if (s % ckpt_every == 0 || s == tr->target_steps) {
            if (checkpoint_save_run(tr, run_dir, keep, path, sizeof path)) goto fail;
            fprintf(stderr, "dit: saved %s\n", path);
        }
        if (sample_every && pixel && (s % sample_every == 0 || s == tr->target_steps)) {
            snprintf(path, sizeof path, "%s/samples", run_dir);
            if (!make_dirs(path)) goto done;
            snprintf(path, sizeof path, "%s/samples/%07lld.png", run_dir, (long long)s);
            if (write_samples(tr, path, sample_steps, sample_cfg, tr->seed)) goto fail;
            fprintf(stderr, "dit: wrote %s\n", path);
        }
    }
    if (root) printf("trained to step %lld: %s/checkpoints/latest\n", (long long)tr->step, run_dir);
    status = 0;
    goto done;
fail:
    cli_fail();
done:
    if (log) fclose(log);
    free(pts);
    trainer_free(tr);
    train_data_free(&data);
    free(recorded_data);
    return status;
}

// ---- dit cache-latents -------------------------------------------------------------------------------

static void on_progress(void *ctx, int done, int total) {
    (void)total;
    progress_update(ctx, done);
}

int cmd_cache_latents(int argc, char **argv) {
    const char *vae_path = NULL, *data_spec = NULL, *out = NULL;
    int image_size = 256, use_mean = 0, seed = 0, threads = 0;
    dit_precision precision = DIT_PRECISION_FP32;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            printf("usage: dit cache-latents --vae FILE --data DIR -o cache.safetensors [options]\n"
                   "\n"
                   "Encodes every image of DIR/<class>/*.png|jpg and its mirror image once with the SD VAE; dit train\n"
                   "--data cache.safetensors then picks one of the two at random per sample and step.\n"
                   "  --image-size N   center-crop size (default 256; latents are N/8)\n"
                   "  --mean           store the posterior mean instead of a posterior sample (the default, as\n"
                   "                   train.py's latent_dist.sample(), drawn once per image and flip)\n"
                   "  -s, --seed S     seed of the posterior noise (default 0)\n"
                   "  --precision P    fp32 (default, also what auto means here) or bf16: the VAE's convolutions as\n"
                   "                   bf16 products with fp32 sums, ~3x faster on a CPU with a bf16 path, at\n"
                   "                   about 1.5e-2 relative error (docs/precision.md)\n"
                   "  -t, --threads N\n");
            return 0;
        }
        if (!strcmp(arg, "--mean")) use_mean = 1;
        else if (cli_take(&a, NULL, "--vae")) vae_path = a.value;
        else if (cli_take(&a, NULL, "--data")) data_spec = a.value;
        else if (cli_take(&a, "-o", "--output")) out = a.value;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 4096, &image_size)) continue;
        else if (cli_take_int(&a, "-s", "--seed", 0, 2147483647, &seed)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take_precision(&a, &precision)) continue;
        else if (a.failed) return 2;
        else return cli_usage_error("cache-latents: unknown option '%s' (see dit cache-latents --help)", arg);
    }
    if (!vae_path || !data_spec || !out)
        return cli_usage_error("cache-latents: --vae FILE, --data DIR and -o FILE are required");
    cli_set_threads(threads);
    train_data data;
    if (train_data_open_folder(&data, data_spec, image_size)) return cli_fail();
    dit_vae *vae = dit_vae_load(vae_path, NULL);
    if (!vae || dit_vae_set_precision(vae, precision) != DIT_OK) {
        dit_vae_free(vae);
        train_data_free(&data);
        return cli_fail();
    }
    progress_bar bar;
    progress_begin(&bar, "encode", data.count);
    dit_status st = train_cache_latents(vae, &data, use_mean, (uint64_t)seed, out, on_progress, &bar);
    progress_end(&bar);
    if (!st) printf("wrote %s (%d images x 2 flips, %d classes, latents %s)\n", out, data.count, data.num_classes,
                    use_mean ? "posterior mean" : "posterior sample");
    dit_vae_free(vae);
    train_data_free(&data);
    return st ? cli_fail() : 0;
}
