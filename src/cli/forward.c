// `dit forward`: one network evaluation on inputs from .npy files, for comparing with other
// implementations. With --cfg-scale, x/t/y are the conditional half and the output is the guided result for
// that half, as the reference forward_with_cfg gives.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void print_help(void) {
    printf("usage: dit forward -m FILE --x x.npy --t t.npy --y y.npy -o out.npy [options]\n"
           "\n"
           "  -m, --model FILE       model file (.pt or .safetensors, any supported layout)\n"
           "  --x FILE               input, float (B, C, S, S)\n"
           "  --t FILE               timesteps (B), integer or float, original 0..999 units\n"
           "  --y FILE               class labels (B), integers\n"
           "  -o, --output FILE      output .npy, float32 (B, out_channels, S, S)\n"
           "  --cfg-scale S          classifier-free guidance (null class = num_classes)\n"
           "  --cfg-all-channels     guide every eps channel and only those (the reference guides output\n"
           "                         channels 0-2: for a 1-channel learned-sigma model, eps and its variance)\n"
           "  -t, --threads N        threads (default: all cores)\n"
           CLI_PRECISION_HELP
           "  --heads H, --image-size N   for files that do not say them (a diffusers file takes them from\n"
           "                         the config.json beside it, else its size from --x)\n");
}

int cmd_forward(int argc, char **argv) {
    const char *model_path = NULL, *x_path = NULL, *t_path = NULL, *y_path = NULL, *out_path = NULL;
    float cfg_scale = 0;
    int use_cfg = 0, all_channels = 0, threads = 0, heads = 0, image_size = 0;
    dit_precision precision = DIT_PRECISION_AUTO;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (!strcmp(arg, "--cfg-all-channels")) all_channels = 1;
        else if (cli_take(&a, "-m", "--model")) model_path = a.value;
        else if (cli_take(&a, NULL, "--x")) x_path = a.value;
        else if (cli_take(&a, NULL, "--t")) t_path = a.value;
        else if (cli_take(&a, NULL, "--y")) y_path = a.value;
        else if (cli_take(&a, "-o", "--output")) out_path = a.value;
        else if (cli_take_float(&a, NULL, "--cfg-scale", &cfg_scale)) use_cfg = 1;
        else if (cli_take_int(&a, "-t", "--threads", 1, 4096, &threads)) continue;
        else if (cli_take_precision(&a, &precision)) continue;
        else if (cli_take_int(&a, NULL, "--heads", 1, 65536, &heads)) continue;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 32768, &image_size)) continue;
        else if (a.failed) return 2;
        else return cli_usage_error("forward: unknown option '%s' (see dit forward --help)", arg);
    }
    if (!model_path || !x_path || !t_path || !y_path || !out_path)
        return cli_usage_error("forward: -m, --x, --t, --y and -o are all required (see dit forward --help)");
    if (all_channels && !use_cfg) return cli_usage_error("forward: --cfg-all-channels needs --cfg-scale");
    cli_set_threads(threads);

    int status = 1, ndim;
    int64_t shape[8], nx, nt, ny;
    float *x = NULL, *t = NULL, *out = NULL;
    int *y = NULL;
    // --x first: a file that does not say its input size (diffusers, no config.json) takes the side of --x.
    dit_model *m = NULL;
    FILE *probe = fopen(model_path, "rb");   // a missing model is the first thing to say
    if (!probe) {
        fprintf(stderr, "dit: %s: cannot open model file (%s)\n", model_path, strerror(errno));
        goto done;
    }
    fclose(probe);
    if (!(x = cli_read_npy_floats(x_path, "--x", &ndim, shape, &nx))) goto fail;
    dit_load_options opts = {.num_heads = heads, .input_size = image_size / 8,
                             .input_size_if_unknown = ndim == 4 && shape[2] == shape[3] && shape[2] <= 4096 ? (int)shape[2] : 0};
    if (!(m = dit_model_load(model_path, &opts))) goto fail;
    if (!cli_apply_precision(m, precision)) goto done;
    const dit_config *c = dit_model_config(m);
    if (ndim != 4 || shape[1] != c->in_channels || shape[2] != c->input_size || shape[3] != c->input_size ||
        shape[0] < 1) {
        fprintf(stderr, "dit: %s (--x): expected shape (B, %d, %d, %d) for this model\n", x_path, c->in_channels,
                c->input_size, c->input_size);
        goto done;
    }
    const int B = (int)shape[0];
    if (!(t = cli_read_npy_floats(t_path, "--t", &ndim, shape, &nt))) goto fail;
    if (nt != B) {
        fprintf(stderr, "dit: %s (--t): expected %d timesteps (one per sample of --x), found %lld\n", t_path, B, (long long)nt);
        goto done;
    }
    if (!(y = cli_read_npy_labels(y_path, "--y", &ny))) goto fail;
    if (ny != B) {
        fprintf(stderr, "dit: %s (--y): expected %d labels (one per sample of --x), found %lld\n", y_path, B, (long long)ny);
        goto done;
    }
    const int OUT = dit_config_out_channels(c), S = c->input_size;
    out = malloc((size_t)B * OUT * S * S * sizeof(float));
    if (!out) {
        fprintf(stderr, "dit: out of memory for the output\n");
        goto done;
    }
    dit_status st = use_cfg ? dit_model_forward_cfg(m, x, t, y, B, cfg_scale, all_channels, out)
                            : dit_model_forward(m, x, t, y, B, out);
    if (st != DIT_OK) goto fail;
    int64_t out_shape[4] = {B, OUT, S, S};
    if (cli_write_npy_floats(out_path, out, 4, out_shape) != DIT_OK) goto fail;
    status = 0;
    goto done;
fail:
    cli_fail();
done:
    free(x); free(t); free(y); free(out);
    dit_model_free(m);
    return status;
}
