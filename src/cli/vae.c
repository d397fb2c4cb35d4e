// `dit vae encode|decode`: images (PNG/JPEG, ADM center crop) or [-1, 1] .npy arrays to DiT latents
// (posterior sample or mean, times the scaling factor 0.18215), and latents back to images (.npy or a PNG
// grid). The autoencoder is the SD KL-f8 VAE of reference.md §4.4; see docs/vae.md.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "base/rng.h"
#include "cli/cli.h"
#include "dit_vae.h"
#include "io/image.h"
#include "io/tensors.h"

int cmd_vae(int argc, char **argv);

enum { RNG_STREAM_VAE_POSTERIOR = 16 };   // the CLI's streams start at 16 (base/rng.h)

static void print_help(void) {
    printf("usage: dit vae encode --vae FILE IN... -o latents.npy [--mean] [--seed S] [--image-size N]\n"
           "       dit vae decode --vae FILE latents.npy -o out.png|out.npy [--vae-tile N] [--vae-overlap N]\n"
           "\n"
           "  --vae FILE            autoencoder weights: diffusers safetensors (current or old attention names) or\n"
           "                        CompVis/ldm .ckpt/.safetensors (e.g. vae-ft-mse-840000-ema-pruned.ckpt)\n"
           "  IN                    PNG/JPEG images (center-cropped as DiT's train.py) or float .npy (N, 3, H, W)\n"
           "                        in [-1, 1]\n"
           "  -o, --output FILE     encode: float32 (N, 4, H/8, W/8) latents times 0.18215;\n"
           "                        decode: .npy float32 (N, 3, H, W) unclamped, or .png grid of the images\n"
           "  --mean                encode to the posterior mean (default: a sample, as train.py)\n"
           "  --seed S              posterior noise seed (default 0; sample i uses Philox stream 16, id i)\n"
           "  --image-size N        crop size for image inputs (default 256)\n"
           "  --vae-tile N          decode in tiles of N x N latent pixels (default: whole latents)\n"
           "  --vae-overlap N       tile overlap in latent pixels (default N / 4), blended linearly\n"
           "  --vae-groups G        GroupNorm groups of the file's model (default 32, as SD)\n"
           "  -t, --threads N       threads (default: all cores)\n"
           "  --precision P         fp32 (default, also what auto means here) or bf16: the 3x3 convolutions\n"
           "                        as bf16 products with fp32 sums (faster; docs/precision.md for the error)\n");
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcasecmp(s + n - m, suffix);
}

// One input as (count, 3, H, W) floats: a .npy (N, C, H, W) / (C, H, W), or an image cropped to size.
static float *read_input(const char *path, int image_size, int channels, int *count, int *H, int *W) {
    if (ends_with(path, ".npy")) {
        int ndim;
        int64_t shape[8], n;
        float *x = cli_read_npy_floats(path, "images", &ndim, shape, &n);
        if (!x) return NULL;
        if (ndim == 3) {
            memmove(shape + 1, shape, 3 * sizeof *shape);
            shape[0] = 1;
            ndim = 4;
        }
        if (ndim != 4 || shape[1] != channels || shape[0] < 1 || shape[2] < 1 || shape[3] < 1 || shape[2] > 65536 ||
            shape[3] > 65536 || shape[0] > 1000000) {
            free(x);
            dit_set_error("%s: expected float images (N, %d, H, W) or (%d, H, W), got %d dimensions with %lld channels",
                          path, channels, channels, ndim, ndim >= 2 ? (long long)shape[1] : 0LL);
            return NULL;
        }
        *count = (int)shape[0];
        *H = (int)shape[2];
        *W = (int)shape[3];
        return x;
    }
    if (channels != 3) {
        dit_set_error("%s: the VAE takes %d input channels; images give 3", path, channels);
        return NULL;
    }
    image_u8 im, crop;
    if (image_read_rgb(path, &im)) return NULL;
    dit_status st = image_center_crop(&im, image_size, &crop);
    image_free(&im);
    if (st) {
        dit_prefix_error("%s", path);
        return NULL;
    }
    float *x = dit_xmalloc((size_t)3 * image_size * image_size * sizeof *x);
    image_to_float_chw(&crop, x);
    image_free(&crop);
    *count = 1;
    *H = *W = image_size;
    return x;
}

static int vae_encode(dit_vae *v, const char *const *inputs, int num_inputs, const char *out_path, int use_mean,
                      uint64_t seed, int image_size) {
    const dit_vae_config *cfg = dit_vae_get_config(v);
    const int f = dit_vae_config_factor(cfg), C = cfg->in_channels, Z = cfg->latent_channels;
    float *batch = NULL;
    int total = 0, H = 0, W = 0, rc = 1;
    for (int i = 0; i < num_inputs; i++) {
        int n, h, w;
        float *x = read_input(inputs[i], image_size, C, &n, &h, &w);
        if (!x) goto done;
        if (i > 0 && (h != H || w != W)) {
            free(x);
            dit_set_error("%s: size %dx%d differs from the first input's %dx%d", inputs[i], w, h, W, H);
            goto done;
        }
        H = h;
        W = w;
        const size_t per = (size_t)C * H * W;
        batch = dit_xrealloc(batch, (size_t)(total + n) * per * sizeof *batch);
        memcpy(batch + (size_t)total * per, x, (size_t)n * per * sizeof *x);
        free(x);
        total += n;
    }
    if (H % f || W % f) {
        dit_set_error("inputs of %dx%d: the VAE needs sides that are multiples of %d", W, H, f);
        goto done;
    }
    const int h = H / f, w = W / f;
    const int64_t plane = (int64_t)Z * h * w;
    float *moments = dit_xmalloc((size_t)(2 * plane * total) * sizeof *moments);
    float *z = dit_xmalloc((size_t)(plane * total) * sizeof *z), *noise = NULL;
    if (dit_vae_encode_moments(v, batch, total, H, W, moments) == DIT_OK) {
        if (!use_mean) {
            noise = dit_xmalloc((size_t)(plane * total) * sizeof *noise);
            for (int b = 0; b < total; b++) rng_normal_fill(noise + b * plane, plane, seed, (uint32_t)b, 0, RNG_STREAM_VAE_POSTERIOR);
        }
        dit_vae_posterior(moments, noise, total, Z, h, w, z);
        for (int64_t i = 0; i < plane * total; i++) z[i] *= cfg->scaling_factor;
        const int64_t shape[4] = {total, Z, h, w};
        if (cli_write_npy_floats(out_path, z, 4, shape) == DIT_OK) {
            rc = 0;
            fprintf(stderr, "dit vae: encoded %d image(s) of %dx%d to %s (%d, %d, %d, %d), %s\n", total, W, H, out_path,
                    total, Z, h, w, use_mean ? "posterior mean" : "posterior sample");
        }
    }
    free(moments);
    free(z);
    free(noise);
done:
    free(batch);
    return rc ? cli_fail() : 0;
}

// (N, C, H, W) in [-1, 1] -> one RGB (or gray) PNG, images in a near-square grid, (x + 1) * 127.5 rounded.
static dit_status write_png_grid(const char *path, const float *x, int N, int C, int H, int W) {
    if (C != 3 && C != 1) return dit_set_error("%s: PNG output needs 1 or 3 channels, the VAE gives %d", path, C);
    int cols = 1;
    while (cols * cols < N) cols++;
    const int rows = (N + cols - 1) / cols;
    const int64_t GW = (int64_t)cols * W, GH = (int64_t)rows * H;
    if (GW > 1000000 || GH > 1000000) return dit_set_error("%s: a %lldx%lld grid is too large for PNG", path, (long long)GW, (long long)GH);
    uint8_t *pixels = dit_xcalloc((size_t)(GW * GH * C), 1);
    for (int n = 0; n < N; n++)
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++)
                for (int c = 0; c < C; c++) {
                    float v = (x[(((int64_t)n * C + c) * H + y) * W + xx] + 1.0f) * 127.5f;
                    v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
                    const int64_t gy = (int64_t)(n / cols) * H + y, gx = (int64_t)(n % cols) * W + xx;
                    pixels[(gy * GW + gx) * C + c] = (uint8_t)lrintf(v);
                }
    dit_status st = png_write(path, pixels, (int)GW, (int)GH, C);
    free(pixels);
    return st;
}

static int vae_decode(dit_vae *v, const char *in_path, const char *out_path, int tile, int overlap) {
    const dit_vae_config *cfg = dit_vae_get_config(v);
    const int f = dit_vae_config_factor(cfg), Z = cfg->latent_channels, OC = cfg->out_channels;
    int ndim;
    int64_t shape[8], n;
    float *z = cli_read_npy_floats(in_path, "latents", &ndim, shape, &n);
    if (!z) return cli_fail();
    if (ndim == 3) {
        memmove(shape + 1, shape, 3 * sizeof *shape);
        shape[0] = 1;
        ndim = 4;
    }
    if (ndim != 4 || shape[1] != Z || shape[0] < 1 || shape[2] < 1 || shape[3] < 1 || shape[2] * f > 65536 ||
        shape[3] * f > 65536) {
        free(z);
        dit_set_error("%s: expected latents (N, %d, h, w) or (%d, h, w), got %d dimensions with %lld channels", in_path,
                      Z, Z, ndim, ndim >= 2 ? (long long)shape[1] : 0LL);
        return cli_fail();
    }
    const int N = (int)shape[0], h = (int)shape[2], w = (int)shape[3];
    for (int64_t i = 0; i < n; i++) z[i] /= cfg->scaling_factor;
    float *x = dit_xmalloc((size_t)N * OC * h * f * w * f * sizeof *x);
    dit_status st = dit_vae_decode_tiled(v, z, N, h, w, tile, overlap, x);
    if (st == DIT_OK) {
        const int64_t out_shape[4] = {N, OC, (int64_t)h * f, (int64_t)w * f};
        st = ends_with(out_path, ".png") ? write_png_grid(out_path, x, N, OC, h * f, w * f)
                                         : cli_write_npy_floats(out_path, x, 4, out_shape);
    }
    free(z);
    free(x);
    if (st) return cli_fail();
    fprintf(stderr, "dit vae: decoded %d latent(s) of %dx%d to %s\n", N, w, h, out_path);
    return 0;
}

int cmd_vae(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    const int encode = !strcmp(argv[1], "encode");
    if (!encode && strcmp(argv[1], "decode")) return cli_usage_error("vae: unknown action '%s' (encode or decode)", argv[1]);
    const char *vae_path = NULL, *out_path = NULL;
    const char **inputs = dit_xcalloc((size_t)argc, sizeof *inputs);
    int num_inputs = 0, use_mean = 0, image_size = 256, tile = 0, overlap = -1, threads = 0, groups = 0, seed = 0, rc = 2;
    dit_precision precision = DIT_PRECISION_FP32;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 2}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            rc = 0;
            goto done;
        }
        if (!strcmp(arg, "--mean")) use_mean = 1;
        else if (cli_take(&a, NULL, "--vae")) vae_path = a.value;
        else if (cli_take(&a, "-o", "--output")) out_path = a.value;
        else if (cli_take_int(&a, NULL, "--seed", 0, 2147483647, &seed)) continue;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 16384, &image_size)) continue;
        else if (cli_take_int(&a, NULL, "--vae-tile", 1, 8192, &tile)) continue;
        else if (cli_take_int(&a, NULL, "--vae-overlap", 0, 8191, &overlap)) continue;
        else if (cli_take_int(&a, NULL, "--vae-groups", 1, 4096, &groups)) continue;
        else if (cli_take_precision(&a, &precision)) continue;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (a.failed) goto done;
        else if (arg[0] == '-' && arg[1]) {
            cli_usage_error("vae: unknown option '%s' (see dit vae --help)", arg);
            goto done;
        } else inputs[num_inputs++] = arg;
    }
    if (!vae_path || !out_path || num_inputs == 0) {
        cli_usage_error("vae %s needs --vae FILE, an input and -o FILE (see dit vae --help)", argv[1]);
        goto done;
    }
    if (!encode && num_inputs != 1) {
        cli_usage_error("vae decode takes one latents .npy, got %d inputs", num_inputs);
        goto done;
    }
    if (overlap < 0) overlap = tile / 4;
    if (tile > 0 && overlap >= tile) {
        cli_usage_error("--vae-overlap %d must be smaller than --vae-tile %d", overlap, tile);
        goto done;
    }
    cli_set_threads(threads);
    dit_vae_load_options opts = {.norm_groups = groups};
    dit_vae *v = dit_vae_load(vae_path, &opts);
    if (!v || dit_vae_set_precision(v, precision) != DIT_OK) {
        rc = cli_fail();
        dit_vae_free(v);
        goto done;
    }
    rc = encode ? vae_encode(v, inputs, num_inputs, out_path, use_mean, (uint64_t)seed, image_size)
                : vae_decode(v, inputs[0], out_path, tile, overlap);
    dit_vae_free(v);
done:
    free(inputs);
    return rc;
}
