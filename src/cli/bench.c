// `dit bench`: how fast this machine runs a DiT, as users compare machines with llama-bench. Synthetic
// weights (the seeded test formula) for a named or custom config, or a model file; seconds per forward (the
// median of --repeats after a warm-up), achieved GFLOP/s (2 flops per multiply-add of the paper's Gflops
// count), and the kernel path. --train times one training step (forward + backward) instead; --vae-decode and
// --vae-encode time the SD autoencoder (synthetic weights at SD's widths, or --vae FILE).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/error.h"
#include "cli/cli.h"
#include "dit_vae.h"
#include "models/dit_model.h"
#include "ops/bf16.h"

static void print_help(void) {
    printf("usage: dit bench [--config NAME | -m FILE] [options]\n"
           "\n"
           "  --config NAME          a named config, DiT-S/2 ... DiT-XL/8 (default DiT-XL/2), synthetic weights\n"
           "  -m, --model FILE       a model file instead\n"
           "  --image-size N         image size in pixels (latent = N / 8); default 256\n"
           "  --batch B              samples per forward (default 1)\n"
           "  --cfg                  guided forward (the batch doubled with the null class, as sampling does)\n"
           "  --train                time one training step (forward + backward) instead of a forward\n"
           "  --vae-decode           time the SD autoencoder decoding a latent of image-size / 8 instead\n"
           "  --vae-encode           time it encoding an image of image-size (both: its precision is fp32\n"
           "                         unless --precision bf16, as dit vae; GFLOP/s count the direct convs' work)\n"
           "  --vae FILE             the autoencoder's weights (default: synthetic, SD's widths)\n"
           "  --repeats R            timed runs after one warm-up (default 3); the median is reported\n"
           "  -t, --threads N        threads (default: all cores)\n"
           CLI_PRECISION_HELP
           "  --json                 one JSON object: seconds_per_forward, gflops, path, ...\n");
}

static int compare_doubles(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The median of times[0 .. n).
static double median_of(double *times, int n) {
    qsort(times, n, sizeof *times, compare_doubles);
    return n % 2 ? times[n / 2] : 0.5 * (times[n / 2 - 1] + times[n / 2]);
}

// dit bench --vae-decode / --vae-encode: one image of image_size (a latent of image_size / f) per run.
static int bench_vae(const char *file, int encode, int image_size, int batch, int repeats, dit_precision precision,
                     int json) {
    dit_vae_config sd;
    dit_vae_config_sd(&sd);
    dit_vae *v = file ? dit_vae_load(file, NULL) : dit_vae_synthetic(&sd, 0);
    if (!v || dit_vae_set_precision(v, precision) != DIT_OK) {
        dit_vae_free(v);
        return cli_fail();
    }
    const dit_vae_config *c = dit_vae_get_config(v);
    const int f = dit_vae_config_factor(c);
    if (image_size % f) {
        dit_vae_free(v);
        return cli_usage_error("bench: --image-size %d is not a multiple of the autoencoder's factor %d", image_size,
                               f);
    }
    const int h = image_size / f, S = image_size;
    const size_t nz = (size_t)batch * c->latent_channels * h * h, nx = (size_t)batch * c->in_channels * S * S;
    float *z = dit_malloc(nz * sizeof *z), *x = dit_malloc(nx * sizeof *x);
    float *moments = dit_malloc(2 * nz * sizeof *moments);
    double *times = dit_malloc((size_t)(repeats + 1) * sizeof *times);
    int status = !z || !x || !moments || !times;
    uint32_t state = 1;
    for (size_t i = 0; i < nz && !status; i++) {
        state = state * 1664525u + 1013904223u;
        z[i] = 5.0f * ((float)(state >> 8) / 8388608.0f - 1.0f);
    }
    for (size_t i = 0; i < nx && !status; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
    }
    for (int r = 0; r <= repeats && !status; r++) {   // run 0 is the warm-up (it also packs the weights)
        const double t0 = now_seconds();
        const dit_status st = encode ? dit_vae_encode_moments(v, x, batch, S, S, moments)
                                     : dit_vae_decode(v, z, batch, h, h, x);
        if (st != DIT_OK) status = 1;
        times[r] = now_seconds() - t0;
    }
    if (status) {
        cli_fail();
    } else {
        const double median = median_of(times + 1, repeats), gmacs = dit_vae_config_gmacs(c, h, h, encode) * batch;
        const char *what = encode ? "encode" : "decode", *path = dit_compute_path(dit_vae_precision(v));
        // the bf16 path's stride-1 3x3 convs: Winograd F(2x2, 3x3) or direct (conv3x3_winograd_enabled, ops/bf16.h)
        const char *convs = dit_vae_precision(v) == DIT_PRECISION_BF16 && conv3x3_winograd_enabled() ? "winograd"
                                                                                                         : "direct";
        if (json)
            printf("{\"vae\": \"%s\", \"file\": %s%s%s, \"image_size\": %d, \"latent_size\": %d, \"batch\": %d, "
                   "\"threads\": %d, \"precision\": \"%s\", \"path\": \"%s\", \"seconds_per_forward\": %.6f, "
                   "\"convs\": \"%s\", \"repeats\": %d, \"gmacs\": %.4f, \"gflops\": %.1f}\n",
                   what, file ? "\"" : "", file ? file : "null", file ? "\"" : "", S, h, batch, cli_threads(),
                   dit_precision_name(dit_vae_precision(v)), path, median, convs, repeats, gmacs, 2 * gmacs / median);
        else
            printf("SD VAE %s %dpx (latent %dx%d) batch %d%s, %d threads, %s, %s 3x3 convs: %.4f s per %s, %.1f "
                   "GFLOP/s (counted as direct convs)\n", what, S, h, h, batch, file ? "" : " (synthetic weights)",
                   cli_threads(), path, convs, median, what, 2 * gmacs / median);
    }
    free(z), free(x), free(moments), free(times);
    dit_vae_free(v);
    return status;
}

int cmd_bench(int argc, char **argv) {
    const char *name = "DiT-XL/2", *file = NULL, *vae_file = NULL;
    int image_size = 256, batch = 1, repeats = 3, threads = 0, json = 0, guided = 0, train = 0, vae = -1;
    dit_precision precision = DIT_PRECISION_AUTO;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (!strcmp(arg, "--json")) json = 1;
        else if (!strcmp(arg, "--cfg")) guided = 1;
        else if (!strcmp(arg, "--train")) train = 1;
        else if (!strcmp(arg, "--vae-decode")) vae = 0;
        else if (!strcmp(arg, "--vae-encode")) vae = 1;
        else if (cli_take(&a, NULL, "--vae")) vae_file = a.value;
        else if (cli_take(&a, NULL, "--config")) name = a.value;
        else if (cli_take(&a, "-m", "--model")) file = a.value;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 32768, &image_size)) continue;
        else if (cli_take_int(&a, NULL, "--batch", 1, 4096, &batch)) continue;
        else if (cli_take_int(&a, NULL, "--repeats", 1, 1000, &repeats)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take_precision(&a, &precision)) continue;
        else if (a.failed) return 2;
        else return cli_usage_error("bench: unknown option '%s' (see dit bench --help)", arg);
    }
    if (guided && train) return cli_usage_error("bench: --cfg and --train do not go together");
    if (vae_file && vae < 0) return cli_usage_error("bench: --vae FILE goes with --vae-decode or --vae-encode");
    if (vae >= 0 && (guided || train || file))
        return cli_usage_error("bench: --vae-decode / --vae-encode do not go with --cfg, --train or -m");
    cli_set_threads(threads);
    if (vae >= 0) return bench_vae(vae_file, vae, image_size, batch, repeats, precision, json);
    dit_model *m = NULL;
    if (file) {
        dit_load_options opts = {.input_size = image_size / 8};
        m = dit_model_load(file, &opts);
    } else {
        dit_config cfg;
        if (dit_config_named(&cfg, name, image_size) != DIT_OK) return cli_fail();
        m = dit_model_synthetic(&cfg, 0);
    }
    if (!m) return cli_fail();
    if (!cli_apply_precision(m, precision)) {
        dit_model_free(m);
        return 1;
    }
    const dit_config *c = dit_model_config(m);
    const int S = c->input_size, C = c->in_channels, OUT = dit_config_out_channels(c);
    const size_t in_n = (size_t)batch * C * S * S, out_n = (size_t)batch * OUT * S * S;
    float *x = dit_malloc(in_n * sizeof *x), *t = dit_malloc(batch * sizeof *t);
    float *out = dit_malloc(out_n * sizeof *out);
    int *y = dit_malloc(batch * sizeof *y);
    double *times = dit_malloc((size_t)(repeats + 1) * sizeof *times);
    if (!x || !t || !out || !y || !times) {
        free(x), free(t), free(out), free(y), free(times);
        dit_model_free(m);
        return cli_fail();
    }
    uint32_t state = 1;
    for (size_t i = 0; i < in_n; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = (float)(state >> 8) / 8388608.0f - 1.0f;
    }
    for (int b = 0; b < batch; b++) {
        t[b] = (float)((b * 397 + 11) % 1000);
        y[b] = (b * 131 + 7) % c->num_classes;
    }
    int status = 0;
    double median = 0;
    if (train) {
        // dit_train_step_seconds reports the fastest of its steps; run it once per repeat for a median
        for (int r = 0; r < repeats && status == 0; r++)
            if ((times[r] = dit_train_step_seconds(m, batch, 1)) < 0) status = 1;
        if (!status) median = median_of(times, repeats);
    } else {
        for (int r = 0; r <= repeats && status == 0; r++) {
            const double t0 = now_seconds();
            const dit_status st = guided ? dit_model_forward_cfg(m, x, t, y, batch, 4.0f, 0, out)
                                         : dit_model_forward(m, x, t, y, batch, out);
            if (st != DIT_OK) status = 1;
            times[r] = now_seconds() - t0;
        }
        if (!status) median = median_of(times + 1, repeats);
    }
    if (status) {
        cli_fail();
    } else {
        // multiply-adds of the work timed: a guided forward runs 2B samples, a training step ~3 forwards
        const double gmacs = dit_config_gmacs(c) * batch * (guided ? 2 : 1) * (train ? 3 : 1);
        const double gflops = 2 * gmacs / median;
        const char *path = dit_compute_path(dit_model_precision(m));
        if (json)
            printf("{\"config\": \"%s\", \"file\": %s%s%s, \"image_size\": %d, \"batch\": %d, \"cfg\": %s, \"train\": %s, "
                   "\"threads\": %d, \"precision\": \"%s\", \"path\": \"%s\", \"seconds_per_forward\": %.6f, "
                   "\"repeats\": %d, \"gmacs\": %.4f, \"gflops\": %.1f, \"params\": %lld}\n",
                   cli_config_name(c), file ? "\"" : "", file ? file : "null", file ? "\"" : "", S * 8, batch,
                   guided ? "true" : "false", train ? "true" : "false", cli_threads(),
                   dit_precision_name(dit_model_precision(m)), path, median, repeats, gmacs, gflops,
                   (long long)dit_config_param_count(c));
        else
            printf("%s %dpx batch %d%s%s, %d threads, %s: %.4f s per %s, %.1f GFLOP/s\n", cli_config_name(c), S * 8,
                   batch, guided ? " guided" : "", file ? "" : " (synthetic weights)", cli_threads(), path, median,
                   train ? "training step" : "forward", gflops);
    }
    free(x); free(t); free(out); free(y); free(times);
    dit_model_free(m);
    return status;
}
