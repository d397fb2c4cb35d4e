// `dit info`: configuration, parameter count and forward Gflops (multiply-adds, the paper's convention) of a
// model file or a named configuration; with neither, a table of the 12 configurations of the paper.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void print_help(void) {
    printf("usage: dit info [-m FILE | --config NAME] [--image-size N] [--heads H] [--block B]\n"
           "\n"
           "  -m, --model FILE        a model file (.pt, .safetensors; official, diffusers or dit layout)\n"
           "  --config NAME           a named config: DiT-S/2 ... DiT-XL/8\n"
           "  --image-size N          image size in pixels (latent = N / 8); default 256\n"
           "  --heads H               head count, for files of a non-standard width\n"
           "  --block B               with --config or the table: the block design, adaln-zero (default), adaln,\n"
           "                          cross-attention or in-context (the paper's Fig. 5; docs/reference.md 1.13)\n"
           "  --hw                    this CPU's kernel paths (AMX, AVX512-BF16, AVX-512, AVX2) and their measured\n"
           "                          GEMM rate\n"
           "With neither -m nor --config: a table of all 12 named configs at --image-size (default: 256 and 512).\n"
           "(--model NAME with a config name still works, deprecated; --model-file FILE is -m.)\n");
}

// "675129632" -> "675,129,632"
static const char *with_commas(long long v, char *buf, size_t n) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", v);
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0 && digits[i - 1] != '-') buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static void print_config(const dit_config *c, const char *source) {
    char a[32], b[32], d[32];
    const int T = dit_config_tokens(c), D = c->hidden_size, OUT = dit_config_out_channels(c);
    long long params = dit_config_param_count(c), pos = (long long)T * D;
    double gmacs = dit_config_gmacs(c);
    printf("source:        %s\n", source);
    printf("model:         %s\n", cli_config_name(c));
    printf("input:         %d x %d x %d%s\n", c->in_channels, c->input_size, c->input_size,
           c->in_channels == 4 ? "  (SD VAE latents)" : "");
    if (c->in_channels == 4) printf("image size:    %d px\n", c->input_size * 8);
    printf("patch:         %d  ->  %d tokens\n", c->patch_size, T);
    printf("hidden:        %d, depth %d, heads %d (head dim %d), mlp hidden %d\n", D, c->depth, c->num_heads,
           D / c->num_heads, (int)(D * c->mlp_ratio));
    printf("block:         %s\n", dit_block_name(c->block));
    printf("classes:       %d%s\n", c->num_classes, c->class_dropout_prob > 0 ? " (+1 null class for guidance)" : "");
    printf("learn sigma:   %s (%d output channels)\n", c->learn_sigma ? "yes" : "no", OUT);
    printf("parameters:    %s (trainable %s; fixed pos_embed %s)\n", with_commas(params, a, sizeof a),
           with_commas(params - pos, b, sizeof b), with_commas(pos, d, sizeof d));
    printf("forward:       %.2f Gflops per image (multiply-adds, the paper's convention) = %.2f GFLOP\n", gmacs,
           2 * gmacs);
    printf("multiply-adds: %s per image (forward)\n", with_commas((long long)llround(gmacs * 1e9), a, sizeof a));
}

static int print_table(int image_size, dit_block_kind block) {
    char a[32];
    printf("%-10s %6s %6s %6s %6s %6s %7s %14s %10s\n", "model", "image", "depth", "hidden", "heads", "patch",
           "tokens", "params", "Gflops");
    const int sizes[2] = {256, 512};
    for (int s = 0; s < 2; s++) {
        int size = image_size ? image_size : sizes[s];
        if (image_size && s) break;
        for (int i = 0; dit_named_configs[i]; i++) {
            dit_config c;
            if (dit_config_named(&c, dit_named_configs[i], size) != DIT_OK) return cli_fail();
            c.block = block;
            printf("%-10s %6d %6d %6d %6d %6d %7d %14s %10.2f\n", dit_named_configs[i], size, c.depth, c.hidden_size,
                   c.num_heads, c.patch_size, dit_config_tokens(&c),
                   with_commas(dit_config_param_count(&c), a, sizeof a), dit_config_gmacs(&c));
        }
    }
    printf("params include the fixed pos_embed; Gflops = forward multiply-adds per image (the paper's convention); "
           "block %s.\n", dit_block_name(block));
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *file = NULL, *name = NULL;
    int image_size = 0, heads = 0, block_set = 0;
    dit_block_kind block = DIT_BLOCK_ADALN_ZERO;
    for (cli_args a = {.argc = argc, .argv = argv, .i = 1}; a.i < argc; a.i++) {
        const char *arg = argv[a.i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            print_help();
            return 0;
        }
        if (!strcmp(arg, "--hw")) return cli_print_hw();
        if (cli_take(&a, "-m", "--model") || cli_take(&a, NULL, "--model-file")) file = a.value;
        else if (cli_take(&a, NULL, "--config")) name = a.value;
        else if (cli_take_int(&a, NULL, "--image-size", 8, 32768, &image_size)) continue;
        else if (cli_take_int(&a, NULL, "--heads", 1, 65536, &heads)) continue;
        else if (cli_take(&a, NULL, "--block")) {
            if (dit_block_parse(a.value, &block) != DIT_OK) return cli_usage_error("info: %s", dit_last_error());
            block_set = 1;
        }
        else if (a.failed) return 2;
        else return cli_usage_error("info: unknown option '%s' (see dit info --help)", arg);
    }
    // `--model DiT-XL/2` named a config before --config existed: keep it working when no such file exists.
    if (file && !name && !strncmp(file, "DiT-", 4) && access(file, F_OK) != 0) {
        fprintf(stderr, "dit: note: --model NAME for a named config is deprecated: use --config %s\n", file);
        name = file, file = NULL;
    }
    if (file && name) return cli_usage_error("info: give either -m FILE or --config NAME, not both");
    if (file && block_set) return cli_usage_error("info: --block describes a config; a file says its own block");
    if (file) {
        dit_load_options opts = {.num_heads = heads, .input_size = image_size ? image_size / 8 : 0};
        dit_model *m = dit_model_load(file, &opts);
        if (!m) return cli_fail();
        print_config(dit_model_config(m), file);
        const dit_objective o = dit_model_objective(m);
        printf("objective:     %s (default sampler %s)\n", o == DIT_OBJECTIVE_V_FLOW ? "v-flow: flow matching, velocity"
               : "eps: noise prediction (IDDPM)", dit_sampler_name(dit_model_default_sampler(m)));
        dit_model_free(m);
        return 0;
    }
    if (name) {
        dit_config c;
        if (dit_config_named(&c, name, image_size ? image_size : 256) != DIT_OK) return cli_fail();
        if (heads) c.num_heads = heads;
        c.block = block;
        if (dit_config_validate(&c) != DIT_OK) return cli_fail();
        print_config(&c, "named config");
        return 0;
    }
    return print_table(image_size, block);
}
