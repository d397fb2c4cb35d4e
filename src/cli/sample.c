// `dit sample`: class-conditional samples with the reference samplers (DDPM with learned variance, DDIM)
// or DPM-Solver++(2M) for eps models, Euler / Heun / Euler-Maruyama for flow models (the file's objective
// picks the default), classifier-free guidance through one batched forward over both halves.
// Outputs: a labelled grid PNG, one PNG per image, an ADM .npz (arr_0 uint8 NHWC), the final latents.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "cli/cli.h"
#include "cli/progress.h"
#include "diffusion/diffusion.h"
#include "dist/dist.h"
#include "dit_vae.h"
#include "image/grid.h"
#include "io/tensors.h"

static void print_help(void) {
    printf("usage: dit sample -m FILE [options]\n"
           "\n"
           "  -m, --model FILE        model file (.pt / .safetensors, any supported layout)\n"
           "  --no-ema                a training checkpoint's trained weights instead of its EMA\n"
           "  --vae FILE              SD VAE (diffusers or CompVis layout) to decode a latent model's samples\n"
           "  --vae-tile N            decode in tiles of N x N latent pixels (for large images)\n"
           "  --class C               class id or name (\"golden retriever\"; ImageNet names for 1000-class\n"
           "                          models); repeat, or give a comma list (default: the reference\n"
           "                          sample.py labels for 1000-class models, else every class)\n"
           "  -n N                    samples per class (default 1 for 1000-class models, else 8)\n"
           "  --cfg-scale S           classifier-free guidance scale (default 4.0, as sample.py; 1 = off)\n"
           "  --cfg-interval LO,HI    guide only at noise levels LO..HI of 0..1 (timestep / 1000; flow time for\n"
           "                          v-flow models; 1 = pure noise), the conditional output elsewhere\n"
           "                          (Kynkaanniemi et al. 2024; default 0,1: every step)\n"
           "  --cfg-all-channels      guide every eps channel and only those (the reference guides output\n"
           "                          channels 0-2: for a 1-channel learned-sigma model, eps and its variance)\n"
           "  --sampler NAME          eps models: ddpm (default; learned variance), ddim, dpm++2m;\n"
           "                          v-flow models (the file says which): flow-heun (default), flow-euler,\n"
           "                          flow-em (Euler-Maruyama SDE); guidance applies to the velocity\n"
           "  --steps N               sampling steps (default 250; 25 for dpm++2m and flow-heun, 50 for\n"
           "                          flow-euler, 100 for flow-em)\n"
           "  --eta E                 DDIM eta (default 0: deterministic)\n"
           "  -s, --seed S            seed (default 0); image k always gets the same noise, whatever --batch\n"
           "  -t, --threads N         threads (default: all cores)\n"
           CLI_PRECISION_HELP
           "  --batch N               images per model evaluation (default 16)\n"
           "  -o, --output FILE       labelled grid PNG (default sample.png unless another output is given)\n"
           "  --out-dir DIR           one PNG per image, DIR/000000.png ...\n"
           "  --npz FILE              ADM evaluator batch: arr_0 uint8 (N, H, W, C)\n"
           "  --noise FILE            start from this noise .npy (N, C, S, S) instead of the seeded one\n"
           "  --save-latents FILE     final samples (N, C, S, S) as float32 .npy, before any VAE\n"
           "  --heads H, --image-size N   for model files that do not say them\n");
}

typedef struct {
    dit_model *model;
    const int *labels;      // the current batch's labels
    float cfg_scale, t_lo, t_hi;   // guidance at timesteps t_lo..t_hi (0..1000 units)
    int use_cfg, guide_all;
} denoise_ctx;

static dit_status denoise(void *ctx, const float *x, const float *t, int B, float *out) {
    denoise_ctx *d = ctx;
    return d->use_cfg ? dit_model_forward_cfg_interval(d->model, x, t, d->labels, B, d->cfg_scale, d->guide_all,
                                                       d->t_lo, d->t_hi, out)
                      : dit_model_forward(d->model, x, t, d->labels, B, out);
}

static void on_progress(void *ctx, int step, int total) {
    (void)total;
    progress_update(ctx, step);
}

static int make_dir(const char *path) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return 1;
    fprintf(stderr, "dit: --out-dir %s: cannot create the directory (%s)\n", path, strerror(errno));
    return 0;
}

int cmd_sample(int argc, char **argv) {
    const char *model_path = NULL, *grid_path = NULL, *out_dir = NULL, *npz_path = NULL, *noise_path = NULL;
    const char *latents_path = NULL, *sampler_name = NULL, *vae_path = NULL;
    const char *class_args[64];
    int num_class_args = 0;
    int *labels = NULL, num_labels = 0, per_class = 0, steps = 0, threads = 0, batch = 16, heads = 0;
    dit_precision precision = DIT_PRECISION_AUTO;
    int image_size = 0, guide_all = 0, seed = 0, vae_tile = 0, skip_ema = 0;
    float cfg_scale = 4.0f, eta = 0.0f, cfg_lo = 0.0f, cfg_hi = 1.0f;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            free(labels);
            return 0;
        }
        if (!strcmp(arg, "--cfg-all-channels")) guide_all = 1;
        else if (!strcmp(arg, "--no-ema")) skip_ema = 1;
        else if (cli_take(&a, "-m", "--model")) model_path = a.value;
        else if (cli_take(&a, NULL, "--vae")) vae_path = a.value;
        else if (cli_take_int(&a, NULL, "--vae-tile", 4, 4096, &vae_tile)) continue;
        else if (cli_take(&a, NULL, "--class")) {
            if (num_class_args == 64) {
                cli_usage_error("--class: at most 64 flags (give a comma list)");
                goto usage;
            }
            class_args[num_class_args++] = a.value;   // resolved once the model (and its names) is loaded
        } else if (cli_take_int(&a, "-n", NULL, 1, 1000000, &per_class)) continue;
        else if (cli_take_float(&a, NULL, "--cfg-scale", &cfg_scale)) continue;
        else if (cli_take(&a, NULL, "--cfg-interval")) {
            int used = 0;
            if (sscanf(a.value, "%f,%f%n", &cfg_lo, &cfg_hi, &used) != 2 || a.value[used] || !(cfg_lo >= 0) ||
                !(cfg_hi <= 1) || !(cfg_lo < cfg_hi)) {
                cli_usage_error("--cfg-interval: expected LO,HI with 0 <= LO < HI <= 1, got '%s'", a.value);
                goto usage;
            }
        }
        else if (cli_take(&a, NULL, "--sampler")) sampler_name = a.value;
        else if (cli_take_int(&a, NULL, "--steps", 1, 1000, &steps)) continue;
        else if (cli_take_float(&a, NULL, "--eta", &eta)) continue;
        else if (cli_take_int(&a, "-s", "--seed", 0, 2147483647, &seed)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take_precision(&a, &precision)) continue;
        else if (cli_take_int(&a, NULL, "--batch", 1, 65536, &batch)) continue;
        else if (cli_take(&a, "-o", "--output")) grid_path = a.value;
        else if (cli_take(&a, NULL, "--out-dir")) out_dir = a.value;
        else if (cli_take(&a, NULL, "--npz")) npz_path = a.value;
        else if (cli_take(&a, NULL, "--noise")) noise_path = a.value;
        else if (cli_take(&a, NULL, "--save-latents")) latents_path = a.value;
        else if (cli_take_int(&a, NULL, "--heads", 1, 65536, &heads)) continue;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 32768, &image_size)) continue;
        else if (a.failed) goto usage;
        else {
            cli_usage_error("sample: unknown option '%s' (see dit sample --help)", arg);
            goto usage;
        }
    }
    // The sampler: named (checked against the model's objective once it is loaded), or the model's default
    dit_sampler sampler = DIT_SAMPLER_DDPM;
    if (sampler_name && dit_sampler_parse(sampler_name, &sampler)) {
        cli_usage_error("--sampler: %s", dit_last_error());
        goto usage;
    }
    if (!model_path) {
        cli_usage_error("sample: -m FILE is required (see dit sample --help)");
        goto usage;
    }
    if (eta < 0 || (eta > 0 && sampler != DIT_SAMPLER_DDIM)) {
        cli_usage_error("--eta: only for --sampler ddim, and not negative");
        goto usage;
    }
    if (!grid_path && !out_dir && !npz_path && !latents_path) grid_path = "sample.png";
    cli_set_threads(threads);

    int status = 1;
    float *x = NULL, *all_latents = NULL, *noise_file = NULL;
    uint8_t *pixels = NULL;
    float *decoded = NULL;
    dit_vae *vae = NULL;
    char **row_labels = NULL;
    int rows = 0;
    diffusion diff = {0};
    dit_load_options opts = {.num_heads = heads, .input_size = image_size / 8, .skip_ema = skip_ema};
    dit_model *m = dit_model_load(model_path, &opts);
    if (!m) goto fail;
    if (!cli_apply_precision(m, precision)) goto done;
    const dit_objective objective = dit_model_objective(m);
    if (!sampler_name) sampler = dit_model_default_sampler(m);
    sampler_name = dit_sampler_name(sampler);
    if (dit_sampler_objective(sampler) != objective) {
        fprintf(stderr, "dit: --sampler %s is for %s models, and %s is %s: use %s\n", sampler_name,
                dit_objective_name(dit_sampler_objective(sampler)), model_path, dit_objective_name(objective),
                objective == DIT_OBJECTIVE_V_FLOW ? "flow-euler, flow-heun or flow-em" : "ddpm, ddim or dpm++2m");
        goto done;
    }
    static const sampler_kind kinds[] = {SAMPLER_DDPM, SAMPLER_DDIM, SAMPLER_DPMPP_2M, SAMPLER_EULER, SAMPLER_HEUN,
                                         SAMPLER_EULER_MARUYAMA};
    const sampler_kind kind = kinds[sampler];
    if (!steps) steps = dit_sampler_default_steps(sampler);
    if (objective == DIT_OBJECTIVE_V_FLOW) guide_all = 1;   // guidance on the velocity channels, all of them
    const dit_config *c = dit_model_config(m);
    const int C = c->in_channels, S = c->input_size, HW = S * S;
    const int pixel_space = C == 1 || C == 3;
    const int want_images = grid_path || out_dir || npz_path;
    if (!pixel_space && want_images && !vae_path) {
        fprintf(stderr, "dit: %s is a latent-space model (%d channels): images need --vae FILE (the SD VAE), "
                "or write only --save-latents FILE\n", model_path, C);
        goto done;
    }
    if (vae_path && !pixel_space && want_images) {
        if (!(vae = dit_vae_load(vae_path, NULL))) goto fail;
        // The autoencoder follows an explicit --precision bf16; auto keeps it fp32 (docs/precision.md).
        if (dit_vae_set_precision(vae, precision == DIT_PRECISION_BF16 ? DIT_PRECISION_BF16 : DIT_PRECISION_FP32)) goto fail;
        if (dit_vae_get_config(vae)->latent_channels != C) {
            fprintf(stderr, "dit: --vae %s has %d latent channels, the model %d\n", vae_path,
                    dit_vae_get_config(vae)->latent_channels, C);
            goto done;
        }
    }
    for (int i = 0; i < num_class_args; i++)
        if (!cli_parse_classes(m, class_args[i], &labels, &num_labels)) goto done;
    if (!num_labels) {
        static const int imagenet_labels[] = {207, 360, 387, 974, 88, 979, 417, 279};   // sample.py
        if (c->num_classes == 1000) {
            labels = malloc(sizeof imagenet_labels);
            memcpy(labels, imagenet_labels, sizeof imagenet_labels);
            num_labels = 8;
        } else {
            num_labels = c->num_classes;
            labels = malloc(num_labels * sizeof(int));
            for (int i = 0; i < num_labels; i++) labels[i] = i;
        }
    }
    for (int i = 0; i < num_labels; i++)
        if (labels[i] >= c->num_classes) {
            fprintf(stderr, "dit: --class %d: the model has classes 0..%d\n", labels[i], c->num_classes - 1);
            goto done;
        }
    if (!per_class) per_class = c->num_classes == 1000 ? 1 : 8;
    const int use_cfg = cfg_scale > 1.0f;   // as sample_ddp.py: guidance only above 1
    if (use_cfg && c->class_dropout_prob <= 0) {
        fprintf(stderr, "dit: %s has no null class (trained without label dropout): use --cfg-scale 1\n", model_path);
        goto done;
    }
    const int total = num_labels * per_class;
    const int64_t per_sample = (int64_t)C * HW;
    if (noise_path) {
        int ndim;
        int64_t shape[8], count;
        noise_file = cli_read_npy_floats(noise_path, "--noise", &ndim, shape, &count);
        if (!noise_file) goto fail;
        if (count != total * per_sample) {
            fprintf(stderr, "dit: %s (--noise): expected %d x %d x %d x %d values (one noise per image), found %lld\n",
                    noise_path, total, C, S, S, (long long)count);
            goto done;
        }
    }
    char respacing[32];
    snprintf(respacing, sizeof respacing, "%d", steps);
    const int respaced = kind == SAMPLER_DDPM || kind == SAMPLER_DDIM;
    diffusion_options dopt = {.respacing = respaced ? respacing : "", .learn_sigma = c->learn_sigma};
    if (diffusion_init(&diff, &dopt) != DIT_OK) goto fail;
    if (out_dir && !make_dir(out_dir)) goto done;

    all_latents = malloc((size_t)total * per_sample * sizeof(float));
    x = malloc((size_t)batch * per_sample * sizeof(float));
    int *image_labels = malloc(total * sizeof(int));
    for (int k = 0; k < total; k++) image_labels[k] = labels[k / per_class];
    if (!all_latents || !x) {
        fprintf(stderr, "dit: out of memory for %d samples\n", total);
        free(image_labels);
        goto done;
    }
    // Under mpirun each rank samples (and decodes) a contiguous share of the images; rank 0 gathers and writes.
    dist_comm *comm = dist_world();
    const int root = dist_is_root(comm);
    int64_t mine_lo, mine_hi;
    dist_share(total, dist_rank(comm), dist_size(comm), &mine_lo, &mine_hi);
    char interval[48] = "";
    if (use_cfg && (cfg_lo > 0 || cfg_hi < 1)) snprintf(interval, sizeof interval, " at noise %.2f..%.2f", cfg_lo, cfg_hi);
    if (root) fprintf(stderr, "dit: sampling %d images (%d classes x %d) with %s, %d steps, cfg %.2f%s, seed %d, %d threads, %s\n",
            total, num_labels, per_class, sampler_name, steps, use_cfg ? cfg_scale : 1.0f, interval, seed, cli_threads(),
            dit_compute_path(dit_model_precision(m)));
    progress_bar bar;
    // The interval in timesteps; [0, 1] covers every step (DDPM's 0..999 and flow's 0..1000)
    denoise_ctx ctx = {.model = m, .cfg_scale = cfg_scale, .use_cfg = use_cfg, .guide_all = guide_all,
                       .t_lo = cfg_lo > 0 ? 1000.0f * cfg_lo : -INFINITY, .t_hi = cfg_hi < 1 ? 1000.0f * cfg_hi : INFINITY};
    sampler_options sopt = {.kind = kind, .eta = eta, .dpm_steps = steps, .flow_steps = steps, .seed = (uint64_t)seed,
                            .progress = root ? on_progress : NULL, .progress_ctx = &bar};
    const int lo = (int)mine_lo, hi = (int)mine_hi, num_batches = (hi - lo + batch - 1) / batch;
    for (int first = lo, bi = 1; first < hi; first += batch, bi++) {
        const int B = hi - first < batch ? hi - first : batch;
        if (noise_file) memcpy(x, noise_file + first * per_sample, B * per_sample * sizeof(float));
        else diffusion_initial_noise(x, B, per_sample, (uint64_t)seed, (uint32_t)first);
        char label[64];
        snprintf(label, sizeof label, num_batches > 1 ? "batch %d/%d step" : "step", bi, num_batches);
        progress_begin(&bar, label, diffusion_sampler_steps(&diff, &sopt));
        ctx.labels = image_labels + first;
        sopt.first_sample_id = (uint32_t)first;
        dit_status st = diffusion_sample(&diff, &sopt, denoise, &ctx, B, C, HW, x);
        progress_end(&bar);
        if (st != DIT_OK) {
            free(image_labels);
            goto fail;
        }
        memcpy(all_latents + first * per_sample, x, B * per_sample * sizeof(float));
    }
    free(image_labels);
    if (dist_gather_rows(comm, all_latents, (size_t)per_sample * sizeof(float), total, 0)) goto fail;

    if (latents_path && root) {
        int64_t shape[4] = {total, C, S, S};
        if (cli_write_npy_floats(latents_path, all_latents, 4, shape) != DIT_OK) goto fail;
        printf("wrote %s (final samples, float32 %d x %d x %d x %d)\n", latents_path, total, C, S, S);
    }
    // Images: the samples themselves (pixel space), or the VAE decode of latents / scaling_factor.
    int img_c = C, img_s = S;
    const float *images = all_latents;
    if (want_images && vae) {
        const float scale = dit_vae_get_config(vae)->scaling_factor;
        img_c = 3;
        img_s = S * dit_vae_config_factor(dit_vae_get_config(vae));
        const int64_t per_image = (int64_t)img_c * img_s * img_s;
        decoded = malloc((size_t)total * per_image * sizeof(float));
        float *z = malloc((size_t)per_sample * sizeof(float));
        if (!decoded || !z) {
            free(z);
            fprintf(stderr, "dit: out of memory for %d decoded images\n", total);
            goto done;
        }
        progress_begin(&bar, "vae decode", hi - lo);
        for (int k = lo; k < hi; k++) {   // one image at a time keeps the decoder's activations small
            for (int64_t i = 0; i < per_sample; i++) z[i] = all_latents[k * per_sample + i] / scale;
            dit_status st = vae_tile ? dit_vae_decode_tiled(vae, z, 1, S, S, vae_tile, vae_tile / 4, decoded + k * per_image)
                                     : dit_vae_decode(vae, z, 1, S, S, decoded + k * per_image);
            if (st != DIT_OK) {
                free(z);
                goto fail;
            }
            if (root) progress_update(&bar, k + 1 - lo);
        }
        progress_end(&bar);
        free(z);
        images = decoded;
        if (dist_gather_rows(comm, decoded, (size_t)per_image * sizeof(float), total, 0)) goto fail;
    }
    if (!root) {   // rank 0 writes every output
        status = 0;
        goto done;
    }
    const int64_t per_image = (int64_t)img_c * img_s * img_s;
    if (want_images) {
        pixels = malloc((size_t)total * per_image);
        to_uint8_nhwc(pixels, images, total, img_c, img_s, img_s);
        if (grid_path) {
            rows = num_labels;
            row_labels = calloc(rows, sizeof *row_labels);
            for (int r = 0; r < rows; r++) {
                const char *name = dit_model_class_name(m, labels[r]);
                char text[96];
                if (name) snprintf(text, sizeof text, "%d %s", labels[r], name);
                else snprintf(text, sizeof text, "class %d", labels[r]);
                row_labels[r] = dit_xstrdup(text);
            }
            rgb_image grid;
            if (grid_compose(&grid, pixels, total, img_s, img_s, img_c, per_class, (const char *const *)row_labels, 2) != DIT_OK)
                goto fail;
            dit_status st = png_write(grid_path, grid.pixels, grid.width, grid.height, 3);
            free(grid.pixels);
            if (st != DIT_OK) goto fail;
            printf("wrote %s (%d classes x %d samples)\n", grid_path, num_labels, per_class);
        }
        if (out_dir) {
            for (int k = 0; k < total; k++) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%06d.png", out_dir, k);
                if (png_write(path, pixels + (size_t)k * per_image, img_s, img_s, img_c) != DIT_OK) goto fail;
            }
            printf("wrote %d images to %s/\n", total, out_dir);
        }
        if (npz_path) {
            npy_array arr = {.dtype = DT_U8, .ndim = 4, .shape = {total, img_s, img_s, img_c}, .data = pixels,
                             .nbytes = (size_t)total * per_image};
            const char *names[] = {"arr_0"};
            if (npz_write(npz_path, names, &arr, 1) != DIT_OK) goto fail;
            printf("wrote %s (arr_0: uint8 %d x %d x %d x %d)\n", npz_path, total, img_s, img_s, img_c);
        }
    }
    status = 0;
    goto done;
fail:
    cli_fail();
done:
    for (int r = 0; row_labels && r < rows; r++) free(row_labels[r]);
    free(row_labels);
    free(pixels);
    free(decoded);
    dit_vae_free(vae);
    free(x);
    free(all_latents);
    free(noise_file);
    free(labels);
    diffusion_free(&diff);
    dit_model_free(m);
    return status;
usage:
    free(labels);
    return 2;
}
